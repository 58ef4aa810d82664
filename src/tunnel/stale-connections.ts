// A peer that comes back before its old connection timed out (an edge device
// that lost power, a NAT that changed its public address) leaves that
// connection open on our side until pings fail, 10-20 s. Meanwhile the relay
// service hands relayed connections for the peer to its oldest connection —
// the dead one — and they fail. So when a peer opens a new direct connection,
// its older direct ones are probed (liveness.ts), and those that do not
// answer within 2 s are closed at once.
import type { TunnelNode } from "./node.ts";
import { isCircuit } from "./addresses.ts";
import { probeOnce } from "./liveness.ts";

const PROBE_TIMEOUT_MS = 2_000;

export function closeStaleOnReconnect(node: TunnelNode, log: (msg: string, fields: Record<string, unknown>) => void): void {
  node.addEventListener("connection:open", (e) => {
    const fresh = e.detail;
    if (isCircuit(fresh.remoteAddr)) return;
    const older = node.getConnections(fresh.remotePeer).filter((c) => c !== fresh && c.status === "open" && !isCircuit(c.remoteAddr) && c.timeline.open < fresh.timeline.open);
    for (const old of older) {
      probeOnce(old, AbortSignal.timeout(PROBE_TIMEOUT_MS)).catch(() => {
        if (old.status !== "open") return;
        log("closing a peer's old connection that no longer answers (it reconnected)", { peer: old.remotePeer.toString(), old: old.remoteAddr.toString(), new: fresh.remoteAddr.toString() });
        old.abort(new Error("edgemesh: superseded by a new connection and silent"));
      });
    }
  });
}
