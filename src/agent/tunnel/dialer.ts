// Reaches another agent by name: races its direct addresses against the
// circuit address through every server we hold a reservation on; the first
// connection that comes up carries the stream. Direct paths get a short head
// start so a LAN peer is not also dialled through the relay.
import type { Connection, PeerId } from "@libp2p/interface";
import { multiaddr, type Multiaddr } from "@multiformats/multiaddr";
import type { Logger } from "../../log.ts";
import { dialNow, type TunnelNode } from "../../tunnel/node.ts";
import { describeAddr, isCircuit, tcpAddr } from "../../tunnel/addresses.ts";
import { SECRET_MISMATCH, type SecretMismatches } from "../../tunnel/secret-mismatch.ts";

export const RELAY_HEAD_START_MS = 300;
/** each further relay (farther by RTT) waits this much longer, and is not dialled once a connection is up */
export const RELAY_STAGGER_MS = 250;

export interface DialSources {
  /** address hints for a node (Node InternalIP etc.), IPs or host:port */
  hints(nodeName: string): string[];
  /** circuit prefixes (".../p2p/<server>/p2p-circuit") of servers and relay agents we are reserved on, nearest first */
  relays(): string[];
  /** tunnel port other agents listen on when a hint carries no port */
  defaultPort: number;
  /** whether an open connection may carry new streams (default: all) */
  usable?: (conn: Connection) => boolean;
}

/**
 * An open connection to the peer, direct ones first; `usable` may pass over
 * some (relayed ones through a relay that stopped answering).
 */
export function bestConnection(node: TunnelNode, peer: PeerId, usable: (c: Connection) => boolean = () => true): Connection | undefined {
  const open = node.getConnections(peer).filter((c) => c.status === "open" && usable(c));
  return open.find((c) => !isCircuit(c.remoteAddr)) ?? open[0];
}

/** servers and relays by RTT, nearest first; unknown RTTs (Infinity) after them, in the configured order */
export function nearestFirst<T extends { rttMs(): number }>(relays: T[]): T[] {
  return relays
    .map((r, i) => ({ r, i, rtt: r.rttMs() }))
    .sort((a, b) => (a.rtt === b.rtt ? a.i - b.i : a.rtt - b.rtt))
    .map((x) => x.r);
}

export { relayOf } from "../../tunnel/addresses.ts";

export function directCandidates(peer: PeerId, hints: string[], defaultPort: number): Multiaddr[] {
  return hintAddresses(hints, defaultPort).map((ma) => ma.encapsulate(`/p2p/${peer.toString()}`));
}

/** the TCP addresses a node's hints name (IP, or host:port), without a peer ID */
export function hintAddresses(hints: string[], defaultPort: number): Multiaddr[] {
  const out = new Map<string, Multiaddr>();
  for (const h of hints) {
    const m = /^(.*):(\d+)$/.exec(h);
    const ma = m && !h.includes("::") ? tcpAddr(m[1]!, Number(m[2])) : tcpAddr(h.replace(/^\[|\]$/g, ""), defaultPort);
    out.set(ma.toString(), ma);
  }
  return [...out.values()];
}

export async function learntAddresses(node: TunnelNode, peer: PeerId): Promise<Multiaddr[]> {
  try {
    const p = await node.peerStore.get(peer);
    return p.addresses
      .map((a) => a.multiaddr)
      // not the unspecified address, nor loopback: dialled from here it is our own listener
      .filter((ma) => !isCircuit(ma) && ma.toString().includes("/tcp/") && !/^\/ip[46]\/(0\.0\.0\.0|::|127\.\d+\.\d+\.\d+|::1)\//.test(ma.toString()))
      .map((ma) => (ma.toString().includes("/p2p/") ? ma : ma.encapsulate(`/p2p/${peer.toString()}`)));
  } catch {
    return [];
  }
}

/** every direct address we know for a peer: hints first, then what it announced; each once */
export async function directAddresses(node: TunnelNode, peer: PeerId, hints: string[], defaultPort: number): Promise<Multiaddr[]> {
  const all = [...directCandidates(peer, hints, defaultPort), ...(await learntAddresses(node, peer))];
  return [...new Map(all.map((m) => [m.toString(), m])).values()];
}

export class PeerDialer {
  private readonly inflight = new Map<string, Promise<Connection>>();

  constructor(
    private readonly node: TunnelNode,
    private readonly src: DialSources,
    private readonly log: Logger,
    private readonly secretMismatches?: Pick<SecretMismatches, "failedSince">,
  ) {}

  async connect(nodeName: string, peer: PeerId, timeoutMs = 10_000): Promise<Connection> {
    const existing = bestConnection(this.node, peer, this.src.usable);
    if (existing) return existing;
    const key = peer.toString();
    let p = this.inflight.get(key);
    if (!p) {
      p = this.race(nodeName, peer, timeoutMs).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /**
   * identity v2, a node whose certificate we have not seen yet: dials its
   * hints without a peer ID (noise tells who answered; the certificate
   * exchange then tells its name, which the caller checks)
   */
  async connectByHints(nodeName: string, timeoutMs = 10_000): Promise<Connection> {
    const addrs = hintAddresses(this.src.hints(nodeName), this.src.defaultPort);
    if (addrs.length === 0) throw new Error(`cannot reach node ${nodeName}: no certificate known for it and no address hint`);
    const started = Date.now();
    try {
      return await this.node.dial(addrs, { signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      const mismatch = await this.secretMismatches?.failedSince(addrs.map(describeAddr), started);
      throw new Error(`cannot reach node ${nodeName}: direct: ${mismatch ? SECRET_MISMATCH : (e as Error).message}`);
    }
  }

  private async race(nodeName: string, peer: PeerId, timeoutMs: number): Promise<Connection> {
    const t0 = performance.now();
    const started = Date.now();
    const uniqueDirect = await directAddresses(this.node, peer, this.src.hints(nodeName), this.src.defaultPort);
    const relayed = this.src.relays().map((prefix) => multiaddr(`${prefix}/p2p/${peer.toString()}`));
    if (uniqueDirect.length === 0 && relayed.length === 0) {
      throw new Error(`no address for node ${nodeName}: no direct hint and no reservation on any tunnel server`);
    }
    const overall = AbortSignal.timeout(timeoutMs);
    const errors: string[] = [];
    let directFailed: () => void = () => {};
    const directDone = new Promise<void>((r) => (directFailed = r));
    const attempts: Array<Promise<Connection>> = [];
    if (uniqueDirect.length) {
      attempts.push(
        this.node.dial(uniqueDirect, { signal: overall }).catch(async (e: Error) => {
          directFailed(); // the relays need not wait for the diagnosis
          // the layers above word a failed secret check in many ways; say what it was
          const mismatch = await this.secretMismatches?.failedSince(uniqueDirect.map(describeAddr), started);
          errors.push(`direct: ${mismatch ? SECRET_MISMATCH : e.message}`);
          throw e;
        }),
      );
    } else directFailed();
    // the nearest relay first; a farther one only if no connection is up by its turn
    // (a relay that died without a word is then passed over within a stagger)
    relayed.forEach((ma, i) => {
      attempts.push(
        Promise.race([directDone, Bun.sleep(RELAY_HEAD_START_MS)])
          .then(() => (i > 0 ? Bun.sleep(i * RELAY_STAGGER_MS) : undefined))
          .then(() => {
            const got = bestConnection(this.node, peer, this.src.usable);
            if (got && (i > 0 || !isCircuit(got.remoteAddr))) return got;
            // not node.dial: it would queue behind the direct dial still running, and it would
            // hand back an existing relayed connection that new streams avoid (its relay went silent)
            return dialNow(this.node, ma, overall);
          })
          .catch((e: Error) => {
            errors.push(`relay: ${e.message}`);
            throw e;
          }),
      );
    });
    try {
      const conn = await Promise.any(attempts);
      this.log.info("connected to peer", {
        node: nodeName,
        path: isCircuit(conn.remoteAddr) ? "relayed" : "direct",
        via: conn.remoteAddr.toString().split("/p2p/")[0],
        ms: Math.round(performance.now() - t0),
      });
      return conn;
    } catch {
      throw new Error(`cannot reach node ${nodeName}: ${errors.join("; ")}`);
    }
  }
}
