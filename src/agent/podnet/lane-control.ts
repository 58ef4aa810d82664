// The lane's exchange (main thread): when the pod network sends to a peer
// over a direct connection, it offers a lane on a stream of that verified
// connection — our UDP port, the id datagrams to us carry, and a fresh key
// for them — and the peer answers with its own. Each side then hands the
// lane to its reader thread, which probes it and uses it once a probe is
// answered. The peer's address is the connection's far end as each side sees
// it (its NAT's address when behind one: a port-preserving NAT lets the
// probes of both sides meet). Over a relayed connection the lane goes
// through that server's lane relay (a grant asked with the exchange).
import type { Stream } from "@libp2p/interface";
import type { NodeStream, StreamOrigin, TunnelAccess } from "../../model/tunnel.ts";
import type { Logger } from "../../log.ts";
import { sockaddrIn } from "../../tunnel/transport/libc-socket.ts";
import { decodeGrant, decodeOffer, directLaneTarget, encodeOffer, GRANT_BYTES, newOffer, OFFER_BYTES, type LaneOffer, type RelayGrant } from "./lane-codec.ts";
import type { LaneInstall, RelayRegister } from "./tun-protocol.ts";

export const LANE_PROTOCOL = "/edgemesh/podnet-lane/1.0.0";
/** the server side's protocol (src/server/lane-relay) */
export const LANE_RELAY_PROTOCOL = "/edgemesh/lane-relay/1.0.0";
const EXCHANGE_TIMEOUT_MS = 5000;
/** how long an exchange waits for a server to tell our public lane address the first time */
const OBSERVE_WAIT_MS = 1000;
/** after a failed or refused exchange, the next waits this long */
const RETRY_MS = 30_000;

interface LaneState {
  connectionId: string;
  pending: boolean;
  retryAt: number;
  installed: boolean;
  /** straight to the peer (not through a server's lane relay) */
  direct?: boolean;
  /** the exchange's stream, kept open as the lane's lease: it closes with its connection, and the lane goes with it */
  lease?: Stream;
  /**
   * offered by the node whose name sorts first: when both sides offer at
   * once, both keep that exchange and close the other, so their lanes agree
   */
  preferred: boolean;
}

export class LaneControl {
  private readonly state = new Map<string, LaneState>();
  private readonly up = new Set<string>();
  /** nodes whose failed exchange was logged as a warning (later ones: debug) */
  private readonly warned = new Set<string>();
  /** our lane's public address as each server's lane relay ("ip:port") saw it; the first one is offered */
  private readonly observed = new Map<string, { ip: string; port: number }>();
  private readonly observers = new Set<() => void>();
  /** a grant asked of a server only to learn our public address (while no server has told it) */
  private discovery?: Promise<void>;
  private discoveryFailedAt = -Infinity;

  constructor(
    private readonly tunnel: TunnelAccess,
    /** this node's name */
    private readonly self: string,
    private readonly port: number,
    private readonly install: (m: LaneInstall | RelayRegister | { op: "unlane"; node: string }) => void,
    private readonly log: Logger,
    /** how long after a failed or refused exchange it is tried again on the same connection (ms) */
    private readonly retryMs = RETRY_MS,
  ) {}

  /** for status: the lane to `node` answers, is being probed, or there is none */
  laneOf(node: string): "up" | "probing" | "-" {
    return this.up.has(node) ? "up" : this.state.get(node)?.installed ? "probing" : "-";
  }

  /**
   * our pod network sends to `node` on `ns` (told at each path check, so a
   * lane lost while the path stayed is offered again): offers a lane over the
   * connection new streams take, unless one is there, under way, or refused
   * there lately
   */
  ensure(node: string, ns: NodeStream): void {
    const st = this.state.get(node);
    if (!routeOf(ns)) {
      if (st?.installed) this.forget(node, "no IPv4 address for a lane on this connection");
      return;
    }
    const now = this.tunnel.preferredConnection(node) ?? ns.connectionId;
    if (st && (st.pending || (st.connectionId === now && (st.installed || Date.now() < st.retryAt)))) return;
    void this.offer(node, ns);
  }

  private stopped = false;
  private readonly retries = new Set<ReturnType<typeof setTimeout>>();

  /** a failed or refused exchange is tried again on the same connection after retryMs (a new connection tries at once) */
  private retryLater(node: string, ns: NodeStream, st: LaneState): void {
    st.retryAt = Date.now() + this.retryMs;
    const t = setTimeout(() => {
      this.retries.delete(t);
      if (!this.stopped && this.state.get(node) === st && ns.stream.status === "open") void this.offer(node, ns);
    }, this.retryMs);
    t.unref?.();
    this.retries.add(t);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.retries) clearTimeout(t);
    this.retries.clear();
    for (const st of this.state.values()) closeStream(st.lease);
  }

  private async offer(node: string, ns: NodeStream): Promise<void> {
    const st: LaneState = { connectionId: ns.connectionId, pending: true, retryAt: 0, installed: false, preferred: this.self < node };
    this.state.set(node, st);
    let stream: Stream | undefined;
    try {
      // the exchange rides the connection new streams take now, which the lane then belongs to
      // (the link's may be older: a relayed path upgraded meanwhile)
      const opened = await this.tunnel.openStream(node, LANE_PROTOCOL);
      stream = opened.stream;
      st.connectionId = opened.connectionId;
      const route = routeOf(opened);
      if (!route) throw new Error("no IPv4 address for a lane on this connection");
      const grant = route.relayPeer ? await this.grantFrom(route.relayPeer, route.ip) : undefined;
      const mine = newOffer(this.port, grant?.relayId ?? 0, grant ? undefined : await this.publicAddress());
      stream.send(encodeOffer(mine));
      const theirs = decodeOffer(await readExactly(stream, OFFER_BYTES, EXCHANGE_TIMEOUT_MS));
      if (typeof theirs === "string") throw new Error(theirs);
      if (theirs.port === 0 || (grant && theirs.relayId === 0)) {
        closeStream(stream);
        this.retryLater(node, ns, st);
        this.log.info("pod network lane offer declined by the peer (no lane there, no lane relay on this path, or it keeps another exchange)", { node });
        return;
      }
      st.lease = stream;
      stream = undefined;
      this.place(node, grant ? { ip: route.ip, port: grant.port, relayId: theirs.relayId } : directLaneTarget(route.ip, theirs), theirs, mine, st, true);
    } catch (err) {
      if (stream) stream.abort(err as Error);
      this.retryLater(node, ns, st);
      // its connection went or stopped being the path (relayed, upgraded meanwhile): the new path gets its own exchange
      if (this.state.get(node) !== st || this.tunnel.preferredConnection(node) !== st.connectionId) {
        this.log.debug("pod network lane exchange ended with its path", { node, error: (err as Error).message });
        return;
      }
      // a peer without the lane (off, or an older agent) fails every 30 s: said once
      const fields = { node, error: (err as Error).message, retryInSeconds: this.retryMs / 1000 };
      if (this.warned.has(node)) this.log.debug("pod network lane not set up; packets take the tunnel stream", fields);
      else this.log.warn("pod network lane not set up; packets take the tunnel stream", fields);
      this.warned.add(node);
    } finally {
      st.pending = false;
    }
  }

  /** a peer's offer: ours back, and its lane handed to the reader thread */
  serve(stream: Stream, from: string, origin: StreamOrigin): void {
    const route = routeOf(origin);
    readExactly(stream, OFFER_BYTES, EXCHANGE_TIMEOUT_MS)
      .then(async (bytes) => {
        const theirs = decodeOffer(bytes);
        if (typeof theirs === "string") throw new Error(theirs);
        const grant =
          route?.relayPeer && theirs.relayId !== 0
            ? await this.grantFrom(route.relayPeer, route.ip).catch((err: Error) => void this.log.warn("pod network lane relay grant failed", { node: from, error: err.message }))
            : undefined;
        const st: LaneState = { connectionId: origin.connectionId ?? "", pending: false, retryAt: 0, installed: false, lease: stream, preferred: from < this.self };
        const cur = this.state.get(from);
        // an exchange of ours that wins over this one stays: this one is refused
        const keepCurrent = cur !== undefined && this.keeps(from, cur, st, false);
        const usable = route !== undefined && theirs.port !== 0 && (route.relayPeer === undefined || grant !== undefined) && !keepCurrent;
        const mine = usable ? newOffer(this.port, grant?.relayId ?? 0, grant ? undefined : await this.publicAddress()) : { port: 0, id: 0, key: new Uint8Array(32), relayId: 0 };
        stream.send(encodeOffer(mine));
        if (!usable) return closeStream(stream);
        this.place(from, grant ? { ip: route.ip, port: grant.port, relayId: theirs.relayId } : directLaneTarget(route.ip, theirs), theirs, mine, st, false);
      })
      .catch((err: Error) => {
        const moved = this.tunnel.preferredConnection(from) !== origin.connectionId;
        this.log[moved ? "debug" : "warn"](moved ? "pod network lane offer ended with its path" : "pod network lane offer not answered", { node: from, error: err.message });
        stream.abort(err);
      });
  }

  /**
   * our relay id at the server `relayPeer`, asked with every exchange (one
   * stream; the server answers the same while it runs, and a restarted one a
   * new grant), and registered by the reader thread from then on
   */
  private async grantFrom(relayPeer: string, ip: string): Promise<RelayGrant> {
    const stream = await this.tunnel.openRelayStream(relayPeer, LANE_RELAY_PROTOCOL);
    const grant = decodeGrant(await readExactly(stream, GRANT_BYTES, EXCHANGE_TIMEOUT_MS).catch((err: Error) => (stream.abort(err), Promise.reject(err))));
    closeStream(stream);
    if (typeof grant === "string") throw new Error(`lane relay: ${grant}`);
    if (grant.port === 0) throw new Error("the server's lane relay is full");
    this.install({ op: "register", addr: sockaddrIn(ip, grant.port), relayId: grant.relayId, token: grant.token });
    this.log.debug("pod network lane relay granted", { server: `${ip}:${grant.port}` });
    return grant;
  }

  /**
   * hands the lane of exchange `st` to the reader thread, unless another
   * exchange for the node wins: a newer connection's, or on the same
   * connection the preferred one (both sides offered at once)
   */
  private place(node: string, to: { ip: string; port: number; relayId?: number }, theirs: LaneOffer, mine: LaneOffer, st: LaneState, ours: boolean): void {
    const cur = this.state.get(node);
    if (cur !== st) {
      // our offer, forgotten meanwhile
      if (ours && cur === undefined) return closeStream(st.lease);
      if (cur !== undefined) {
        if (this.keeps(node, cur, st, ours)) return closeStream(st.lease);
        if (cur.installed) closeStream(cur.lease);
      }
    }
    st.installed = true;
    st.direct = to.relayId === undefined;
    this.state.set(node, st);
    this.up.delete(node);
    // the lane lives as long as its connection: when the lease closes (server or peer restarted, path gone), packets take the stream at once
    const lease = st.lease;
    if (lease) {
      lease.addEventListener("close", () => {
        if (this.state.get(node) === st) this.forget(node, "its connection closed");
      });
      lease.addEventListener("remoteCloseWrite", () => closeStream(lease));
    }
    this.install({ op: "lane", node, addr: sockaddrIn(to.ip, to.port), txId: theirs.id, txKey: theirs.key, rxId: mine.id, rxKey: mine.key, ...(to.relayId !== undefined ? { relayId: to.relayId } : {}) });
    this.log.info("pod network lane offered; probing", { node, peer: `${to.ip}:${to.port}`, via: to.relayId !== undefined ? "server" : "direct" });
  }

  /**
   * of two exchanges for `node`, whether `cur` (ours in place or under way)
   * wins over `next`: on one connection (both sides offered at once), the one
   * offered by the node whose name sorts first, once in place; on two, the one
   * on the connection new streams take now (a relayed one upgraded to direct
   * while its exchange ran loses to the direct one's); when neither is, the
   * later answer (`next`, unless it is our own offer completing)
   */
  private keeps(node: string, cur: LaneState, next: LaneState, nextIsOurs: boolean): boolean {
    if (cur.connectionId === next.connectionId) return cur.installed && cur.preferred && !next.preferred;
    const now = this.tunnel.preferredConnection(node);
    if (now === cur.connectionId) return true;
    if (now === next.connectionId) return false;
    return nextIsOurs;
  }

  /**
   * a server told our lane's public address (the reader thread says when it
   * changes); when the one we offer changes (the NAT's mapping moved), direct
   * lanes offered with the old one go, and are offered again with traffic
   */
  onObserved(server: string, ip: string, port: number): void {
    const offered = this.observed.values().next().value;
    const before = this.observed.get(server);
    this.observed.set(server, { ip, port });
    for (const wake of this.observers) wake();
    if (!before) {
      this.log.info("public lane address seen by a tunnel server", { server, address: `${ip}:${port}` });
      return;
    }
    this.log.warn("our public lane address changed (the NAT's mapping moved)", { server, was: `${before.ip}:${before.port}`, now: `${ip}:${port}` });
    if (offered !== before) return;
    for (const [node, st] of this.state) if (st.installed && st.direct) this.forget(node, "our public lane address changed");
  }

  /** for status: our lane's public address as the first server saw it */
  publicLaneAddress(): string | undefined {
    const o = this.observed.values().next().value;
    return o && `${o.ip}:${o.port}`;
  }

  /**
   * our lane's public address, for an offer: as a server saw it; the first
   * time, one is asked (a grant we register with, which its answers carry),
   * waiting up to a second; undefined without a server that answers
   */
  private async publicAddress(): Promise<{ ip: string; port: number } | undefined> {
    const known = this.observed.values().next().value;
    if (known) return known;
    // no server to ask (a mesh on one LAN), or none answered lately: no wait
    if (!this.discovery && (Date.now() - this.discoveryFailedAt < this.retryMs || this.tunnel.servers().length === 0)) return undefined;
    this.discovery ??= this.discover();
    let wake = () => {};
    const told = new Promise<void>((r) => this.observers.add((wake = r)));
    const timer = setTimeout(wake, OBSERVE_WAIT_MS);
    await told;
    clearTimeout(timer);
    this.observers.delete(wake);
    return this.observed.values().next().value;
  }

  private async discover(): Promise<void> {
    for (const server of this.tunnel.servers()) {
      try {
        await this.grantFrom(server.peer, server.ip);
        return;
      } catch (err) {
        this.log.debug("no public lane address from this server", { server: server.ip, error: (err as Error).message });
      }
    }
    this.discoveryFailedAt = Date.now();
    this.discovery = undefined;
  }

  /** the reader thread's word on a lane */
  onLane(node: string, up: boolean): void {
    if (up === this.up.has(node)) return;
    if (up) this.up.add(node);
    else this.up.delete(node);
    if (up) this.log.info("pod network lane up: single packets go as datagrams", { node });
    else this.log.warn("pod network lane down (no answer): packets take the tunnel stream", { node });
  }

  /** the node is gone or relayed: its lane too */
  forget(node: string, why: string): void {
    const st = this.state.get(node);
    if (!st) return;
    this.state.delete(node);
    closeStream(st.lease);
    this.up.delete(node);
    this.install({ op: "unlane", node });
    this.log.info("pod network lane removed", { node, why });
  }
}

function closeStream(s: Stream | undefined): void {
  if (s && s.status === "open") void s.close().catch(() => s.abort(new Error("closed")));
}

interface Route {
  /** the peer's address, or the server's when relayed */
  ip: string;
  relayPeer?: string;
}

/** where a lane over this connection sends: the peer itself, or the server that relays the connection */
function routeOf(o: { path: "direct" | "relayed"; remoteIp?: string; relayPeer?: string; relayIp?: string }): Route | undefined {
  if (o.path === "direct") return o.remoteIp ? { ip: o.remoteIp } : undefined;
  return o.relayPeer && o.relayIp ? { ip: o.relayIp, relayPeer: o.relayPeer } : undefined;
}

/** the first `n` bytes the peer sends on `stream` (more is an error), within `ms` */
function readExactly(stream: Stream, n: number, ms: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const got = new Uint8Array(n);
    let have = 0;
    const done = (err?: Error) => {
      clearTimeout(timer);
      stream.removeEventListener("message", onMessage);
      stream.removeEventListener("close", onClose);
      if (err) reject(err);
      else resolve(got);
    };
    const onMessage = (evt: Event) => {
      const data = (evt as unknown as { data: Uint8Array | { subarray(): Uint8Array } }).data;
      const chunk = data instanceof Uint8Array ? data : data.subarray();
      if (have + chunk.byteLength > n) return done(new Error(`more than ${n} bytes`));
      got.set(chunk, have);
      have += chunk.byteLength;
      if (have === n) done();
    };
    const onClose = () => done(new Error(`stream closed after ${have} of ${n} bytes`));
    const timer = setTimeout(() => done(new Error(`no answer in ${ms} ms`)), ms);
    stream.addEventListener("message", onMessage);
    stream.addEventListener("close", onClose);
  });
}
