// What the tunnel module offers other modules (via the bus): streams to a
// target as seen from another node.
import type { Stream } from "@libp2p/interface";

export interface ProxyTarget {
  protocol: "tcp" | "udp";
  host: string;
  port: number;
}

/** an opened proxy stream, and payload that arrived with the reply */
export interface TunnelChannel {
  stream: Stream;
  initial: Uint8Array;
}

export interface TunnelAccess {
  /**
   * opens a proxied stream to `target`, dialled by the agent on node
   * `nodeName`; `early` is the client's first bytes, sent with the request
   * (the far agent writes them to the target once it has dialled it)
   */
  open(nodeName: string, target: ProxyTarget, early?: Uint8Array): Promise<TunnelChannel>;
}
