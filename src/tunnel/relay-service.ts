// Relaying for other members, the same on a tunnel server and on a relay
// agent (agent.tunnel.relay): the relayed flows under flow control with a cap
// per source (a warning at most every 10 s while it refuses), the relay_*
// metrics, and the relay service's reservation table, which is not public
// API in js-libp2p 3 and is reached only here.
import type { Logger } from "../log.ts";
import type { TunnelNode } from "./node.ts";
import { manageRelayedFlows, type RelayCounters } from "./relayed-flows.ts";

type Collect = (name: string, help: string, type: "gauge" | "counter", read: () => Array<{ value: number }>) => void;

const REFUSED_WARN_EVERY_MS = 10_000;

/** the relay service's reservations: peer → its expiry (undefined on a node that does not relay) */
export function relayReservations(node: TunnelNode): Map<unknown, { expiry: Date }> | undefined {
  return (node.services as { relay?: { reservations?: Map<unknown, { expiry: Date }> } }).relay?.reservations;
}

export interface RelayForOthers {
  /** relayed connections one source may have open; more are refused */
  maxPerPeer: number;
  /** the config field that sets it, named in the warning and the metric's help */
  maxPerPeerField: string;
  maxStreamWindowBytes: number;
  log: Logger;
  collect: Collect;
}

/** wires flow control, the refusal warning and the metrics; the counters are the caller's for /status */
export function relayForOthers(node: TunnelNode, counters: RelayCounters, o: RelayForOthers): void {
  let lastWarn = 0;
  manageRelayedFlows(node, counters, o.maxPerPeer, (source) => {
    if (Date.now() - lastWarn < REFUSED_WARN_EVERY_MS) return;
    lastWarn = Date.now();
    o.log.warn("relayed connection refused: its source has as many open as allowed", { peer: source, max: o.maxPerPeer });
  }, o.maxStreamWindowBytes);
  o.collect("relay_reservations", "Relay reservations other nodes hold here.", "gauge", () => [{ value: relayReservations(node)?.size ?? 0 }]);
  o.collect("relay_connections_total", "Relayed connections opened through this node.", "counter", () => [{ value: counters.connections }]);
  o.collect("relay_connections_active", "Relayed connections open now.", "gauge", () => [{ value: counters.active }]);
  o.collect("relay_refused_total", `Relayed connections refused because their source had ${o.maxPerPeerField} open.`, "counter", () => [{ value: counters.refused }]);
  o.collect("relay_bytes_total", "Bytes relayed between other nodes (both directions).", "counter", () => [{ value: counters.bytes }]);
}
