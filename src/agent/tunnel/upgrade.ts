// Moves peers from relayed to direct connections without breaking flows.
// - When a peer reaches us through a relay, we dial it back directly on the
//   addresses we know for it (a unilateral upgrade; hole punching between two
//   NATed peers is DCUtR's job).
// - A relayed connection is never closed under a flow: DCUtR (or anyone)
//   asking to close it only marks it; it really closes once its proxy streams
//   have ended. New streams go on the direct connection.
import type { Connection, PeerId } from "@libp2p/interface";
import type { Logger } from "../../log.ts";
import type { TunnelNode } from "../../tunnel/node.ts";
import type { Membership } from "../../tunnel/membership.ts";
import { isCircuit } from "../../tunnel/addresses.ts";
import { directAddresses } from "./dialer.ts";

type Close = Connection["close"];

const IDENTIFY_WAIT_MS = 3_000;

/** resolves once identify has run with `peer`, or after `ms` (it may have run already) */
function identified(node: TunnelNode, peer: PeerId, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      node.removeEventListener("peer:identify", onIdentify);
      resolve();
    };
    const onIdentify = (e: CustomEvent<{ peerId: PeerId }>) => {
      if (e.detail.peerId.equals(peer)) done();
    };
    const timer = setTimeout(done, ms);
    node.addEventListener("peer:identify", onIdentify as never);
  });
}

export class PathUpgrader {
  private readonly originals = new WeakMap<Connection, Close>();
  private readonly draining = new Set<Connection>();
  private shuttingDown = false;
  private readonly sweeper: ReturnType<typeof setInterval>;
  upgrades = 0;

  constructor(
    private readonly node: TunnelNode,
    private readonly membership: Membership,
    private readonly hints: (nodeName: string) => string[],
    private readonly defaultPort: number,
    private readonly flowProtocols: string[],
    private readonly log: Logger,
  ) {
    node.addEventListener("connection:open", (e) => this.onOpen(e.detail));
    this.sweeper = setInterval(() => this.sweep(), 1000);
  }

  private flows(conn: Connection): number {
    return conn.streams.filter((s) => this.flowProtocols.includes(s.protocol ?? "")).length;
  }

  private onOpen(conn: Connection): void {
    if (!isCircuit(conn.remoteAddr)) return;
    const original = conn.close.bind(conn);
    this.originals.set(conn, original);
    conn.close = async () => {
      if (this.shuttingDown || this.flows(conn) === 0) return original();
      if (!this.draining.has(conn)) this.log.debug("relayed connection will close when its flows end", { peer: conn.remotePeer.toString(), flows: this.flows(conn) });
      this.draining.add(conn);
    };
    if (conn.direction === "inbound") void this.dialBack(conn);
  }

  private async dialBack(relayed: Connection): Promise<void> {
    const claim = await this.membership.waitVerified(relayed.remotePeer, 10_000);
    if (!claim || relayed.status !== "open") return;
    const peer = relayed.remotePeer;
    let unique = await directAddresses(this.node, peer, this.hints(claim.nodeName), this.defaultPort);
    // without hints, the addresses the peer announces (its LAN ones: a node
    // behind our own NAT) come with identify, which may still be running
    if (unique.length === 0) {
      await identified(this.node, peer, IDENTIFY_WAIT_MS);
      unique = await directAddresses(this.node, peer, this.hints(claim.nodeName), this.defaultPort);
    }
    if (unique.length === 0) return;
    try {
      const direct = await this.node.dial(unique, { signal: AbortSignal.timeout(5000), force: true } as never);
      if (isCircuit(direct.remoteAddr)) return;
      this.upgrades++;
      this.log.info("path upgraded to direct", { node: claim.nodeName, via: direct.remoteAddr.toString().split("/p2p/")[0] });
      void relayed.close();
    } catch (e) {
      this.log.debug("no direct path back to peer, staying relayed", { node: claim.nodeName, error: (e as Error).message });
    }
  }

  /** closes relayed connections whose flows ended once a direct one exists */
  private sweep(): void {
    for (const conn of this.draining) {
      if (conn.status !== "open") {
        this.draining.delete(conn);
        continue;
      }
      if (this.flows(conn) === 0) {
        this.draining.delete(conn);
        void this.originals.get(conn)?.().catch(() => {});
      }
    }
    for (const conn of this.node.getConnections()) {
      if (!isCircuit(conn.remoteAddr) || conn.status !== "open" || this.flows(conn) > 0) continue;
      const hasDirect = this.node.getConnections(conn.remotePeer).some((c) => c.status === "open" && !isCircuit(c.remoteAddr));
      if (hasDirect) {
        this.log.debug("closing idle relayed connection, a direct one exists", { peer: conn.remotePeer.toString(), streams: conn.streams.map((s) => s.protocol).join(",") });
        void this.originals.get(conn)?.().catch(() => {});
      }
    }
  }

  /** from now on, close means close (node shutdown) */
  shutdown(): void {
    this.shuttingDown = true;
    clearInterval(this.sweeper);
  }
}
