// The traffic module's listener table: one listener on the bridge IP per
// service port, published whole on the bus (`listeners` topic) after every
// change, so the proxier can DNAT ClusterIP:port to it.
import type { Protocol } from "./index.ts";

export interface ListenerEntry {
  /** ns/name */
  service: string;
  portName: string;
  clusterIPs: string[];
  port: number;
  protocol: Protocol;
  /** the port our listener got on the bridge IP */
  listenPort: number;
}

/** A complete table, never a diff. */
export interface ListenerTable {
  bridgeIP: string;
  /** bumps on every publication */
  generation: number;
  /** performance.now() when the services snapshot behind this table arrived (for the snapshot → rules-live latency) */
  snapshotAt?: number;
  entries: ListenerEntry[];
}
