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
import { PublicLaneAddress } from "./lane-public.ts";

export const LANE_PROTOCOL = "/edgemesh/podnet-lane/2.0.0";
/** the server side's protocol (src/server/lane-relay) */
export const LANE_RELAY_PROTOCOL = "/edgemesh/lane-relay/1.0.0";
const EXCHANGE_TIMEOUT_MS = 5000;
/** how long an exchange waits for a server to tell our public lane address the first time */
const OBSERVE_WAIT_MS = 1000;
/** after a failed or refused exchange, the next on that connection waits this long */
const RETRY_MS = 30_000;

interface LaneState {
  connectionId: string;
  /** straight to the peer (not through a server's lane relay) */
  direct: boolean;
  /** the exchange's stream, kept open as the lane's lease: it closes with its connection, and the lane goes with it */
  lease?: Stream;
  /** offered by the node whose name sorts first (both sides see the same) */
  preferred: boolean;
}

export class LaneControl {
  /** lanes handed to the reader thread */
  private readonly state = new Map<string, LaneState>();
  /** our exchanges under way */
  private readonly offering = new Map<string, LaneState>();
  /** the connection an exchange of ours last failed or was declined on, and until when not to offer there again */
  private readonly refused = new Map<string, { connectionId: string; until: number }>();
  private readonly up = new Set<string>();
  /** nodes whose failed exchange was logged as a warning (later ones: debug) */
  private readonly warned = new Set<string>();
  private readonly publicAddr: PublicLaneAddress;
  private stopped = false;

  constructor(
    private readonly tunnel: TunnelAccess,
    /** this node's name */
    private readonly self: string,
    private readonly port: number,
    private readonly install: (m: LaneInstall | RelayRegister | { op: "unlane"; node: string }) => void,
    private readonly log: Logger,
    /** how long after a failed or refused exchange it is tried again on the same connection (ms) */
    private readonly retryMs = RETRY_MS,
  ) {
    this.publicAddr = new PublicLaneAddress(() => tunnel.servers(), (peer, ip) => this.grantFrom(peer, ip), log, retryMs);
  }

  /** for status: the lane to `node` answers, is being probed, or there is none */
  laneOf(node: string): "up" | "probing" | "-" {
    return this.up.has(node) ? "up" : this.state.get(node) ? "probing" : "-";
  }

  /**
   * our pod network sends to `node` on `ns`, the stream on the connection new
   * streams take (told at each path check, so a lane lost while the path
   * stayed is offered again): offers a lane over that connection unless one
   * is in place (it stays until its lease closes, but a lane through a server
   * gives way to a direct path), ours is under way, or one failed there lately
   */
  ensure(node: string, ns: NodeStream): void {
    if (this.stopped) return;
    if (!routeOf(ns)) {
      if (this.state.has(node)) this.forget(node, "no IPv4 address for a lane on this connection");
      return;
    }
    this.publicAddr.kick();
    if (this.offering.has(node)) return;
    const st = this.state.get(node);
    if (st && (st.direct || ns.path === "relayed")) return;
    const now = this.tunnel.preferredConnection(node) ?? ns.connectionId;
    const r = this.refused.get(node);
    if (r && r.connectionId === now && Date.now() < r.until) return;
    void this.offer(node, ns);
  }

  stop(): void {
    this.stopped = true;
    for (const st of this.state.values()) closeStream(st.lease);
  }

  private async offer(node: string, ns: NodeStream): Promise<void> {
    const st: LaneState = { connectionId: ns.connectionId, direct: ns.path === "direct", preferred: this.self < node };
    this.offering.set(node, st);
    let stream: Stream | undefined;
    try {
      // the exchange rides the connection new streams take now, which the lane then belongs to
      // (the link's may be older: a relayed path upgraded meanwhile)
      const opened = await this.tunnel.openStream(node, LANE_PROTOCOL);
      stream = opened.stream;
      st.connectionId = opened.connectionId;
      const route = routeOf(opened);
      if (!route) throw new Error("no IPv4 address for a lane on this connection");
      st.direct = route.relayPeer === undefined;
      const grant = route.relayPeer ? await this.grantFrom(route.relayPeer, route.ip) : undefined;
      const mine = newOffer(this.port, grant?.relayId ?? 0, grant ? undefined : await this.publicAddr.get(OBSERVE_WAIT_MS));
      stream.send(encodeOffer(mine));
      const theirs = decodeOffer(await readExactly(stream, OFFER_BYTES, EXCHANGE_TIMEOUT_MS));
      if (typeof theirs === "string") throw new Error(theirs);
      if (theirs.port === 0 || (grant && theirs.relayId === 0)) {
        closeStream(stream);
        this.refused.set(node, { connectionId: st.connectionId, until: Date.now() + this.retryMs });
        this.log.info("pod network lane offer declined by the peer (no lane there, no lane relay on this path, or it keeps another exchange)", { node });
        return;
      }
      st.lease = stream;
      stream = undefined;
      // forgotten meanwhile (the node left, or we stopped)
      if (this.offering.get(node) !== st || this.stopped) return closeStream(st.lease);
      this.place(node, grant ? { ip: route.ip, port: grant.port, relayId: theirs.relayId } : directLaneTarget(route.ip, theirs), theirs, mine, st);
    } catch (err) {
      if (stream) stream.abort(err as Error);
      this.refused.set(node, { connectionId: st.connectionId, until: Date.now() + this.retryMs });
      // its connection went or stopped being the path (relayed, upgraded meanwhile): the new path gets its own exchange
      if (this.pathMoved(node, st.connectionId)) {
        this.log.debug("pod network lane exchange ended with its path", { node, error: (err as Error).message });
        return;
      }
      // a peer without the lane (off, or an older agent) fails every 30 s: said once
      const fields = { node, error: (err as Error).message, retryInSeconds: this.retryMs / 1000 };
      if (this.warned.has(node)) this.log.debug("pod network lane not set up; packets take the tunnel stream", fields);
      else this.log.warn("pod network lane not set up; packets take the tunnel stream", fields);
      this.warned.add(node);
    } finally {
      if (this.offering.get(node) === st) this.offering.delete(node);
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
        const st: LaneState = { connectionId: origin.connectionId ?? "", direct: route?.relayPeer === undefined, lease: stream, preferred: from < this.self };
        const cur = this.state.get(from);
        // a lane in place that wins over this one stays: this one is refused
        const keepCurrent = cur !== undefined && keeps(cur, st);
        const usable = !this.stopped && route !== undefined && theirs.port !== 0 && (route.relayPeer === undefined || grant !== undefined) && !keepCurrent;
        const mine = usable ? newOffer(this.port, grant?.relayId ?? 0, grant ? undefined : await this.publicAddr.get(OBSERVE_WAIT_MS)) : { port: 0, id: 0, key: new Uint8Array(32), relayId: 0 };
        stream.send(encodeOffer(mine));
        if (!usable || this.stopped) return closeStream(stream);
        this.place(from, grant ? { ip: route.ip, port: grant.port, relayId: theirs.relayId } : directLaneTarget(route.ip, theirs), theirs, mine, st);
      })
      .catch((err: Error) => {
        const moved = this.pathMoved(from, origin.connectionId);
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
    this.install({ op: "register", server: `${ip}:${grant.port}`, addr: sockaddrIn(ip, grant.port), relayId: grant.relayId, token: grant.token });
    this.log.debug("pod network lane relay granted", { server: `${ip}:${grant.port}` });
    return grant;
  }

  /** whether new streams to `node` now take a connection other than `connectionId` (an exchange there ended with its path) */
  private pathMoved(node: string, connectionId: string | undefined): boolean {
    const now = this.tunnel.preferredConnection(node);
    return now !== undefined && now !== connectionId;
  }

  /** hands the lane of exchange `st` to the reader thread, unless the lane in place wins over it (then its lease is closed) */
  private place(node: string, to: { ip: string; port: number; relayId?: number }, theirs: LaneOffer, mine: LaneOffer, st: LaneState): void {
    const cur = this.state.get(node);
    if (cur) {
      if (keeps(cur, st)) return closeStream(st.lease);
      closeStream(cur.lease);
    }
    this.state.set(node, st);
    this.refused.delete(node);
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
   * a server told our lane's public address (the reader thread says when it
   * changes, and every 10 s). The first one: direct lanes not answering yet
   * were offered without it and go (offered again with traffic); a change of
   * the one we offer (the NAT's mapping moved): every direct lane goes
   */
  onObserved(server: string, ip: string, port: number): void {
    const told = this.publicAddr.told(server, ip, port);
    if (told === "same") return;
    if (told === "first") this.log.info("public lane address seen by a tunnel server", { server, address: `${ip}:${port}` });
    else this.log.warn("our public lane address changed (the NAT's mapping moved): direct lanes are offered again", { server, now: `${ip}:${port}` });
    for (const [node, st] of this.state) if (st.direct && (told === "changed" || !this.up.has(node))) this.forget(node, "our public lane address is new");
  }

  /** for status: our lane's public address as the first server answering saw it */
  publicLaneAddress(): string | undefined {
    const a = this.publicAddr.current();
    return a && `${a.ip}:${a.port}`;
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
    this.offering.delete(node);
    const st = this.state.get(node);
    if (!st) return;
    this.state.delete(node);
    closeStream(st.lease);
    this.up.delete(node);
    this.install({ op: "unlane", node });
    this.log.info("pod network lane removed", { node, why });
  }
}

/**
 * of two exchanges for one node, whether `cur` (in place) wins over `next`,
 * decided the same way on both sides: a direct lane over one through a
 * server (a relayed path upgraded while its exchange ran), then the one
 * offered by the node whose name sorts first (offers that crossed, on one
 * connection or two), else the newer
 */
function keeps(cur: LaneState, next: LaneState): boolean {
  if (cur.direct !== next.direct) return cur.direct;
  if (cur.preferred !== next.preferred) return cur.preferred;
  return false;
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
