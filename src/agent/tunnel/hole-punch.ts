// Turns a relayed connection between two NATed agents into a direct one by
// TCP hole punching (DESIGN §7; docs/tunnel.md "Hole punching").
//
// Why our own coordination rather than stock @libp2p/dcutr: dcutr only uses
// addresses libp2p deems public (edge NATs sit in private, CGNAT and TEST-NET
// space), goes through the dial queue, which drops its `initiator: false` so
// both ends upgrade as initiator ("Both endpoints are clients"), and lets
// several runs per peer overlap. Here:
// - our public address is what a tunnel server observed (identify's
//   observedAddr); our dials to servers leave from the listening port
//   (transport/tcp.ts), so that address maps to the port we listen on;
// - one run per peer at a time, started by the side with the smaller peer ID;
// - the punch dial goes straight to the transport, from the listening port,
//   with the role this side plays in the upgrade;
// - a bounded number of attempts per round, then relayed with a reason and a
//   retry later with backoff.
// The relayed connection is not closed here: PathUpgrader closes it once its
// flows have ended, and new streams take the direct connection.
import type { Connection, IdentifyResult, PeerId, Stream } from "@libp2p/interface";
import type { Logger } from "../../log.ts";
import type { TunnelNode } from "../../tunnel/node.ts";
import type { Membership } from "../../tunnel/membership.ts";
import { isCircuit, tcpAddr } from "../../tunnel/addresses.ts";
import { parseAgentVersion } from "../../tunnel/agent-version.ts";
import type { PunchRole, SharedPortTcp } from "../../tunnel/transport/tcp.ts";
import { classifyNat, type NatMapping, type NatReport } from "./nat-report.ts";
import { encodePunchMessage, hostPortOf, initiates, PUNCH_PROTOCOL, readPunchMessage, retryDelayMs, splitHostPort } from "./punch-protocol.ts";

/** attempts per round (DCUtR uses 3) */
export const ATTEMPTS_PER_ROUND = 3;
const MESSAGE_TIMEOUT_MS = 5_000;
// a punch that works completes in about one round trip (plus a SYN
// retransmission at worst); 3 s per attempt bounds a failing round near 10 s
const DIAL_TIMEOUT_MS = 3_000;
// SYNs per address and attempt when the far gateway refuses them: each takes
// at least a round trip and a millisecond, so this bounds a refused window
const MAX_SYNS_PER_ADDRESS = 500;

export type PunchFailure = "no-public-address" | "peer-has-no-public-address" | "coordination" | "timeout" | "refused" | "upgrade" | "unsupported";

interface PeerState {
  running: boolean;
  failures: number;
  nextTryAt: number;
  /** why the peer is still relayed, after a round failed */
  reason?: string;
  relayedSince?: number;
}

export class HolePuncher {
  readonly stats = { attempts: 0, successes: 0, refusedSyns: 0, failures: {} as Partial<Record<PunchFailure, number>>, lastMsToDirect: undefined as number | undefined };
  /** our address as each tunnel server sees it: server peer → host:port */
  private readonly observed = new Map<string, { address: string; observer: string }>();
  private readonly peers = new Map<string, PeerState>();
  private retryTimer?: ReturnType<typeof setInterval>;
  private stopped = false;

  constructor(
    private readonly node: TunnelNode,
    private readonly transport: SharedPortTcp | undefined,
    private readonly membership: Membership,
    private readonly listenPort: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.node.handle(PUNCH_PROTOCOL, (stream, conn) => void this.respond(stream, conn), { runOnLimitedConnection: true });
    this.node.addEventListener("peer:identify", (e) => void this.onIdentify(e.detail));
    this.node.addEventListener("connection:open", (e) => void this.onConnection(e.detail));
    this.retryTimer = setInterval(() => this.retryDue(), 5_000);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.retryTimer);
  }

  /** what our NAT does with mappings, from what the servers observed */
  natReport(): NatReport {
    return classifyNat([...this.observed.values()], this.listenPort);
  }

  /** our public addresses (as servers observed them) */
  publicAddrs(): string[] {
    return [...new Set([...this.observed.values()].map((o) => o.address))];
  }

  /** why a relayed peer is still relayed, when a round has failed */
  relayReason(peer: PeerId): string | undefined {
    return this.peers.get(peer.toString())?.reason;
  }

  private async onIdentify(r: IdentifyResult): Promise<void> {
    // only a verified server's (or relay agent's) word on our address counts
    const version = parseAgentVersion(r.agentVersion)?.role;
    if (version !== "server" && version !== "agent") return;
    const claim = await this.membership.waitVerified(r.peerId, 10_000);
    if (claim?.role !== "server" && !claim?.relay) return;
    const hp = r.observedAddr ? hostPortOf(r.observedAddr.toString()) : undefined;
    if (!hp || isCircuit(r.connection.remoteAddr)) return;
    const before = this.observed.get(r.peerId.toString())?.address;
    this.observed.set(r.peerId.toString(), { address: hp, observer: `${claim.relay ? "relay" : claim.role} ${claim.nodeName}` });
    if (before !== hp) {
      const port = splitHostPort(hp).port;
      if (port === this.listenPort) this.log.info("public address observed by a tunnel server", { address: hp });
      else this.log.info("public address observed by a tunnel server; the NAT changed our port, so hole punching may fail", { address: hp, listenPort: this.listenPort });
    }
  }

  private async onConnection(conn: Connection): Promise<void> {
    if (!isCircuit(conn.remoteAddr) || this.stopped) return;
    const key = conn.remotePeer.toString();
    const st = this.state(key);
    st.relayedSince ??= Date.now();
    const claim = await this.membership.waitVerified(conn.remotePeer, 10_000);
    if (claim?.role !== "agent") return;
    if (initiates(this.node.peerId.toString(), key)) void this.round(conn.remotePeer, claim.nodeName);
  }

  private retryDue(): void {
    const now = Date.now();
    for (const [key, st] of this.peers) {
      if (st.running || st.failures === 0 || now < st.nextTryAt) continue;
      const relayed = this.node.getConnections().find((c) => c.remotePeer.toString() === key && isCircuit(c.remoteAddr) && c.status === "open");
      if (!relayed) continue;
      const claim = this.membership.claim(relayed.remotePeer);
      if (claim?.role === "agent" && initiates(this.node.peerId.toString(), key)) void this.round(relayed.remotePeer, claim.nodeName);
    }
  }

  private state(key: string): PeerState {
    let st = this.peers.get(key);
    if (!st) this.peers.set(key, (st = { running: false, failures: 0, nextTryAt: 0 }));
    return st;
  }

  private hasDirect(key: string): boolean {
    return this.node.getConnections().some((c) => c.remotePeer.toString() === key && c.status === "open" && !isCircuit(c.remoteAddr));
  }

  /** one round as initiator: up to ATTEMPTS_PER_ROUND exchanges and simultaneous dials */
  private async round(peer: PeerId, nodeName: string): Promise<void> {
    const key = peer.toString();
    const st = this.state(key);
    if (st.running || this.hasDirect(key)) return;
    st.running = true;
    let last: PunchFailure = "timeout";
    let detail = "";
    let peerNat: NatMapping | undefined;
    try {
      for (let attempt = 1; attempt <= ATTEMPTS_PER_ROUND && !this.stopped; attempt++) {
        if (this.hasDirect(key)) return this.succeeded(st, nodeName, "already direct");
        const ours = this.publicAddrs();
        if (!this.transport?.mode.sharedPort) {
          last = "unsupported";
          detail = `dials cannot leave from the listening port (${this.transport?.mode.reason ?? "no shared-port transport"})`;
          break;
        }
        if (ours.length === 0) {
          last = "no-public-address";
          detail = "no tunnel server has told us our public address yet";
          break;
        }
        this.stats.attempts++;
        // until the round ends, status says it is running (and what the last attempt met)
        st.reason = `hole punching under way (attempt ${attempt} of ${ATTEMPTS_PER_ROUND}${attempt > 1 ? `; the last: ${last}` : ""})`;
        const relayed = this.node.getConnections(peer).find((c) => isCircuit(c.remoteAddr) && c.status === "open");
        if (!relayed) return;
        let stream: Stream | undefined;
        try {
          stream = await relayed.newStream(PUNCH_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(MESSAGE_TIMEOUT_MS) });
          const t0 = performance.now();
          stream.send(encodePunchMessage({ type: "connect", addrs: ours, nat: this.natReport().mapping }));
          const { value: reply } = await readPunchMessage(stream, new Uint8Array(0), MESSAGE_TIMEOUT_MS);
          const rtt = performance.now() - t0;
          if (reply.type !== "connect") throw new PunchError("coordination", "expected CONNECT");
          peerNat = reply.nat;
          if (reply.addrs.length === 0) throw new PunchError("peer-has-no-public-address", `${nodeName} does not know its public address`);
          stream.send(encodePunchMessage({ type: "sync" }));
          await Bun.sleep(rtt / 2);
          await this.dial(peer, reply.addrs, "initiator");
          return this.succeeded(st, nodeName, `attempt ${attempt}`);
        } catch (e) {
          const pe = e instanceof PunchError ? e : classify(e);
          last = pe.kind;
          detail = pe.message;
          this.count(last);
          this.log.debug("hole punch attempt failed", { node: nodeName, attempt, reason: last, error: detail });
          if (last === "peer-has-no-public-address") break;
        } finally {
          stream?.close().catch(() => stream?.abort(new Error("punch done")));
        }
      }
      if (this.hasDirect(key)) return this.succeeded(st, nodeName, "direct meanwhile");
      st.failures++;
      const wait = retryDelayMs(st.failures);
      st.nextTryAt = Date.now() + wait;
      st.reason = `hole punching failed (${last}${detail ? `: ${detail}` : ""})${natNote(this.natReport().mapping, nodeName, peerNat)}; next try in ${Math.round(wait / 1000)} s`;
      this.log.info("staying relayed", { node: nodeName, reason: st.reason });
    } finally {
      st.running = false;
    }
  }

  private succeeded(st: PeerState, nodeName: string, how: string): void {
    const ms = st.relayedSince === undefined ? undefined : Date.now() - st.relayedSince;
    this.stats.successes++;
    this.stats.lastMsToDirect = ms;
    st.failures = 0;
    st.reason = undefined;
    st.relayedSince = undefined;
    this.log.info("hole punched: direct connection", { node: nodeName, how, msSinceRelayed: ms });
  }

  private count(k: PunchFailure): void {
    this.stats.failures[k] = (this.stats.failures[k] ?? 0) + 1;
  }

  /** the responder's side of a round: answer CONNECT, dial when SYNC arrives */
  private async respond(stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer;
    const st = this.state(peer.toString());
    st.relayedSince ??= Date.now();
    let theirNat: NatMapping | undefined;
    try {
      const claim = await this.membership.waitVerified(peer, MESSAGE_TIMEOUT_MS);
      if (claim?.role !== "agent") throw new PunchError("coordination", "not a verified agent");
      const first = await readPunchMessage(stream, new Uint8Array(0), MESSAGE_TIMEOUT_MS);
      if (first.value.type !== "connect") throw new PunchError("coordination", "expected CONNECT");
      theirNat = first.value.nat;
      const ours = this.transport?.mode.sharedPort ? this.publicAddrs() : [];
      stream.send(encodePunchMessage({ type: "connect", addrs: ours, nat: this.natReport().mapping }));
      if (ours.length === 0) return;
      const sync = await readPunchMessage(stream, first.rest, MESSAGE_TIMEOUT_MS);
      if (sync.value.type !== "sync") throw new PunchError("coordination", "expected SYNC");
      await this.dial(peer, first.value.addrs, "responder");
      this.succeeded(st, claim.nodeName, "responder");
    } catch (e) {
      const pe = e instanceof PunchError ? e : classify(e);
      this.log.debug("hole punch (responder) failed", { peer: peer.toString(), reason: pe.kind, error: pe.message });
      // this side's status says why too (the peer runs the rounds and their schedule)
      if (!this.hasDirect(peer.toString())) st.reason = `hole punching failed (${pe.kind}: ${pe.message})${natNote(this.natReport().mapping, "the peer", theirNat)}; the peer starts the next round`;
    } finally {
      stream.close().catch(() => stream.abort(new Error("punch done")));
    }
  }

  /**
   * Simultaneous dials from the listening port to each of the peer's public
   * addresses; the first upgraded one wins. A SYN that the far gateway
   * answers with a RST or an ICMP unreachable (it arrived before the peer's
   * own SYN had opened the mapping) is sent again at once, until the window
   * closes: the next one meets the mapping (issue 17). The punch stays
   * expected for the whole window, so the peer's SYN reaching our listener
   * after one of our dials was refused is still upgraded in our role.
   */
  private async dial(peer: PeerId, addrs: string[], role: PunchRole): Promise<Connection> {
    const t = this.transport;
    if (!t) throw new PunchError("unsupported", "no shared-port transport");
    const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS);
    const ends = addrs.map((hp) => {
      const { host, port } = splitHostPort(hp);
      return t.expectPunch(host, port, peer, role);
    });
    try {
      return await Promise.any(addrs.map((hp) => this.dialUntil(t, peer, hp, role, signal))).catch((e: AggregateError) => {
        throw classify(e.errors?.[0] ?? e);
      });
    } finally {
      for (const end of ends) end();
    }
  }

  private async directSoon(peer: PeerId, signal: AbortSignal, cause: unknown): Promise<Connection> {
    const conn = await waitDirect(this.node, peer, signal);
    if (!conn) throw cause;
    return conn;
  }

  /** one address: dial again after each refusal, until connected, the window ends, or the peer is direct another way */
  private async dialUntil(t: SharedPortTcp, peer: PeerId, hp: string, role: PunchRole, signal: AbortSignal): Promise<Connection> {
    const { host, port } = splitHostPort(hp);
    const ma = tcpAddr(host, port).encapsulate(`/p2p/${peer.toString()}`);
    for (let syn = 1; ; syn++) {
      try {
        return await t.dialHolePunch(ma, role, signal);
      } catch (e) {
        // the peer's SYN reached our listener in the gap after a refusal (an
        // ICMP answer leaves the far mapping open): that socket is the punch
        // (EADDRNOTAVAIL: the accepted socket holds the 4-tuple, its upgrade not started yet)
        if (t.punchArrived(host, port) || isTupleTaken(e)) return this.directSoon(peer, signal, e);
        if (!isRefusal(e) || signal.aborted || this.stopped || syn >= MAX_SYNS_PER_ADDRESS) throw e;
        this.stats.refusedSyns++;
        // again at once: after an ICMP answer the peer's SYN is on its way and
        // must meet a socket of ours (conntrack re-inits the mapping for a
        // later SYN); every few tries a pause of up to 2 ms, so two sides
        // refused by RSTs in step do not stay in step
        if (syn % 4 === 0) await Bun.sleep(Math.random() * 2);
      }
    }
  }
}

/** the peer's direct connection, once the upgrade of an accepted punch completes */
async function waitDirect(node: TunnelNode, peer: PeerId, signal: AbortSignal): Promise<Connection | undefined> {
  while (!signal.aborted) {
    const direct = node.getConnections(peer).find((c) => c.status === "open" && !isCircuit(c.remoteAddr));
    if (direct) return direct;
    await Bun.sleep(5);
  }
  return undefined;
}

function isTupleTaken(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? "";
  return code === "EADDRNOTAVAIL" || code === "EADDRINUSE";
}

/** the far gateway answered our SYN (RST, ICMP port/host/net unreachable) instead of dropping it */
function isRefusal(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? "";
  return code === "ECONNREFUSED" || code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "ECONNRESET";
}

/** why punching cannot work, when a NAT on the path is known to map each destination anew */
function natNote(ours: NatMapping, peerName: string, theirs: NatMapping | undefined): string {
  const dependent = [ours === "endpoint-dependent" ? "our NAT" : "", theirs === "endpoint-dependent" ? `${peerName}'s NAT` : ""].filter(Boolean);
  return dependent.length ? `; ${dependent.join(" and ")} maps each destination to a new port (endpoint-dependent), so TCP punching cannot work: relayed` : "";
}

class PunchError extends Error {
  constructor(
    readonly kind: PunchFailure,
    message: string,
  ) {
    super(message);
  }
}

function classify(e: unknown): PunchError {
  const msg = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: string }).code ?? "";
  if (e instanceof PunchError) return e;
  if (code === "ETIMEDOUT" || /timed? ?out|aborted/i.test(msg)) return new PunchError("timeout", msg);
  if (code === "ECONNREFUSED" || code === "ECONNRESET") return new PunchError("refused", msg);
  if (/expected|punch message|stream/i.test(msg)) return new PunchError("coordination", msg);
  return new PunchError("upgrade", msg);
}
