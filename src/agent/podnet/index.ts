// The pod network module (agent.podNetwork): pod IPs reachable across nodes
// and sites. Packets the host routes into our TUN (another node's pod CIDR)
// go to that node's agent over the tunnel; packets from peers are checked
// (source in the sender's pod CIDRs or its node address, destination in
// ours) and written to the TUN, where the host's stack and CNI deliver them.
import type { Stream } from "@libp2p/interface";
import type { Module, ModuleContext, ModuleFactory } from "../module.ts";
import type { TunnelAccess } from "../../model/tunnel.ts";
import type { Node } from "../../model/index.ts";
import { LEN_BYTES, readLen, UnitDecoder } from "./unit-frames.ts";
import { intToIp4 } from "../../model/cidr.ts";
import { fragmentationNeeded, readIp4 } from "./packet.ts";
import { RouteTable, type DropReason } from "./route-table.ts";
import { PeerLink, PODNET_PROTOCOL, type SendDrop } from "./peer-link.ts";
import { PodnetHost } from "./host.ts";
import { TunDevice } from "./tun.ts";
import { PLAIN_VNET, VNET_HDR_LEN } from "./vnet.ts";
import { inboundProblem } from "./admission.ts";
import { coalesceTcp } from "./tcp-coalesce.ts";
import { localAddressIn } from "./local-address.ts";
import { LANE_PROTOCOL, LaneControl } from "./lane-control.ts";
import { tryLoadOpenSslChaCha } from "../../tunnel/crypto/openssl-chacha.ts";
import { DropLogBudget } from "./drop-log.ts";
import type { LaneStats, WorkerEvent } from "./tun-protocol.ts";

export const podnetModule: ModuleFactory = {
  name: "podnet",
  enabled: (c) => c.agent.podNetwork.enable,
  readyOnStart: true,
  create: (ctx) => new PodNetwork(ctx),
};

/**
 * how often the routes and their source are checked: a CNI bridge created
 * after we started (flannel makes cni0 with the node's first pod) becomes the
 * source, and routes the kernel dropped with a deleted address come back
 */
export const ROUTE_CHECK_MS = 5_000;

/** the lane in status: its port, and its public address when a server told it */
function laneStatus(port: number, publicAddr: string | undefined): { port: number; public?: string } {
  return publicAddr ? { port, public: publicAddr } : { port };
}

type Drop = DropReason | SendDrop | "no-route" | "not-ipv4" | "too-big" | "tun-write";

class PodNetwork implements Module {
  readonly name = "podnet";
  private tun?: TunDevice;
  private host?: PodnetHost;
  private table?: RouteTable;
  private tunnel?: TunnelAccess;
  private readonly links = new Map<string, PeerLink>();
  private readonly inbound = new Map<string, { packets: number; bytes: number }>();
  private readonly drops = new Map<Drop, number>();
  /** packets admitted from peers, and the TUN writes they took (TCP runs coalesced) */
  private readonly writes = { packets: 0, writes: 0 };
  /** batches read right after our own writes, on the main thread */
  private sameThreadReads = 0;
  private readonly logBudget = new DropLogBudget();
  private unsubscribe: Array<() => void> = [];
  private routeSrc?: string;
  private applying: Promise<void> = Promise.resolve();
  private routeCheck?: ReturnType<typeof setInterval>;
  private lanes?: LaneControl;
  /** the reader thread's latest lane counters */
  private laneStats: { lanes: Record<string, LaneStats>; drops: Record<string, number> } = { lanes: {}, drops: {} };
  private readonly cfg;

  constructor(private readonly ctx: ModuleContext) {
    this.cfg = ctx.config.agent.podNetwork;
  }

  async start(): Promise<void> {
    const { bus, log } = this.ctx;
    this.tun = TunDevice.open(this.cfg.device);
    if (this.tun.offloadError) log.warn("TUN offload refused: one packet per read and write (slower)", { error: this.tun.offloadError });
    this.host = new PodnetHost(this.cfg.device, log);
    await this.host.setUp(this.cfg.mtu);
    log.info("pod network device up", { device: this.cfg.device, mtu: this.cfg.mtu });
    const laneCfg = this.cfg.lane;
    if (laneCfg.enable) {
      // the lane seals with OpenSSL's ChaCha20-Poly1305 (no slower cipher on a path that is about latency)
      const openssl = tryLoadOpenSslChaCha();
      try {
        if (!openssl.ok) throw new Error(`no OpenSSL ChaCha20-Poly1305 (${openssl.error})`);
        this.tun.openLane(laneCfg.port);
        log.info("pod network lane listening", { udpPort: laneCfg.port });
      } catch (err) {
        log.warn("pod network lane off: packets take the tunnel stream only", { error: (err as Error).message });
      }
    }
    // before the node table can arrive: the reader thread gets every table
    this.tun.startReading((batch) => this.fromTun(batch), {
      self: this.ctx.config.nodeName,
      mtu: this.cfg.mtu,
      onEvent: (e) => this.fromReader(e),
      onError: (message) => log.error("pod network reader thread failed: no packets are read from the device", { error: message }),
    });
    this.unsubscribe.push(
      bus.subscribe(
        "tunnel",
        (t) => {
          this.tunnel = t;
          t.handle(PODNET_PROTOCOL, (stream, from) => this.receive(stream, from)).catch((err: Error) => log.error("pod network cannot serve its protocol", { error: err.message }));
          if (this.tun?.laneOpen) {
            const lanes = (this.lanes = new LaneControl(t, this.ctx.config.nodeName, laneCfg.port, (m) => this.tun?.post(m), log));
            t.handle(LANE_PROTOCOL, (stream, from, origin) => lanes.serve(stream, from, origin)).catch((err: Error) => log.error("pod network cannot serve its lane protocol", { error: err.message }));
          }
        },
        "podnet",
        { replay: true },
      ),
      // one table at a time, in order; a failed one (an `ip` error) is logged and the next still applies
      bus.subscribe(
        "nodes",
        (snap) =>
          void (this.applying = this.applying
            .then(() => this.applyNodes(snap.nodes))
            .catch((err: Error) => log.error("pod routes not applied; the next node table will try again", { error: err.message }))),
        "podnet",
        { replay: true },
      ),
    );
    this.routeCheck = setInterval(() => {
      this.applying = this.applying.then(() => this.applyRoutes()).catch((err: Error) => log.warn("pod routes not checked", { error: err.message }));
    }, ROUTE_CHECK_MS);
    this.registerMetrics();
  }

  private async applyNodes(nodes: Node[]): Promise<void> {
    const { log, config } = this.ctx;
    const table = new RouteTable(nodes, config.nodeName);
    for (const r of table.refused) log.warn("pod CIDR not routed", { node: r.node, cidr: r.cidr, reason: r.reason });
    if (table.own.length === 0) log.warn("this node has no pod CIDR (Node.spec.podCIDRs or its static entry's podCIDRs): packets from peers to our pods will be dropped", { node: config.nodeName });
    this.table = table;
    await this.applyRoutes();
    // the reader thread routes and checks lane packets with its own copy of the table
    this.tun?.post({ op: "nodes", nodes });
    for (const [node, link] of this.links) {
      if (!table.peers.has(node)) {
        link.close();
        this.links.delete(node);
        this.lanes?.forget(node, "the node left the node table");
      }
    }
  }

  /** routes of the current table into the TUN, from our pod-CIDR address if we have one; each change logged */
  private async applyRoutes(): Promise<void> {
    const { table, host } = this;
    if (!table || !host) return;
    const lost = await host.lostRoutes();
    if (lost.length) this.ctx.log.warn("pod routes were removed from the host (by a deleted address or another program): putting them back", { cidrs: lost.join(",") });
    // this host's own traffic to other nodes' pods leaves from an address in our pod CIDR, so replies route back through the tunnel
    const src = await localAddressIn(table.own);
    if (src !== this.routeSrc) this.ctx.log.info(src ? "host traffic to remote pods leaves from our pod CIDR" : "no local address in our pod CIDR: host traffic to remote pods leaves from the node's address, and replies from other sites cannot reach it", { src: src ?? "-" });
    this.routeSrc = src;
    const { added, removed } = await host.setRoutes(table.routed().map((r) => r.cidr.text), src);
    if (added.length || removed.length) this.ctx.log.info("pod routes updated", { added: added.join(",") || "-", removed: removed.join(",") || "-", routes: table.routed().length });
  }

  /** a batch from the TUN: `[u32 length][virtio-net header][packet]...` (a view valid during this call) */
  private fromTun(batch: Uint8Array): void {
    const table = this.table;
    // per peer, in order; TCP runs leave as one GSO packet (fewer frames to send, check and write)
    const byNode = new Map<string, Uint8Array[]>();
    let off = 0;
    while (off + LEN_BYTES <= batch.byteLength) {
      const len = readLen(batch, off);
      const p = batch.subarray(off + LEN_BYTES, off + LEN_BYTES + len);
      off += LEN_BYTES + len;
      const h = readIp4(p.subarray(VNET_HDR_LEN));
      if (!h) {
        this.drop("not-ipv4");
        continue;
      }
      const node = table?.nodeFor(h.dst);
      if (!node || !this.tunnel) {
        this.drop("no-route", `to ${intToIp4(h.dst)}`);
        continue;
      }
      let list = byNode.get(node);
      if (!list) byNode.set(node, (list = []));
      list.push(p);
    }
    for (const [node, units] of byNode) {
      const link = this.link(node);
      for (const u of coalesceTcp(units)) link.send(u);
      link.flush();
    }
  }

  private fromReader(e: WorkerEvent): void {
    if (e.ev === "lane") this.lanes?.onLane(e.node, e.up);
    else if (e.ev === "observed") this.lanes?.onObserved(e.server, e.ip, e.port);
    else if (e.ev === "drop") this.ctx.log.warn("pod network packet dropped", { reason: e.reason, detail: e.detail || "-", packets: 1, via: "lane" });
    else this.laneStats = { lanes: e.lanes, drops: e.drops };
  }

  private link(node: string): PeerLink {
    let l = this.links.get(node);
    if (!l) {
      l = new PeerLink(node, this.tunnel!, this.cfg.maxQueueKiB * 1024, this.ctx.log, (reason, n) => this.drop(reason, `to ${node}`, n), (ns) => this.lanes?.ensure(node, ns));
      this.links.set(node, l);
    }
    return l;
  }

  /** packets from `from`: checked one by one, written to the TUN */
  private receive(stream: Stream, from: string): void {
    const decoder = new UnitDecoder();
    const count = this.inbound.get(from) ?? { packets: 0, bytes: 0 };
    this.inbound.set(from, count);
    stream.addEventListener("message", (evt) => {
      const data = (evt as unknown as { data: Uint8Array | { subarray(): Uint8Array } }).data;
      const chunk = data instanceof Uint8Array ? data : data.subarray();
      let packets: Uint8Array[];
      try {
        packets = decoder.push(chunk);
      } catch (err) {
        this.drop("malformed", `from ${from}: ${(err as Error).message}`);
        return stream.abort(err as Error);
      }
      const accepted: Uint8Array[] = [];
      for (const p of packets) if (this.admit(p, from, count)) accepted.push(p);
      const tun = this.tun!;
      const units = coalesceTcp(accepted);
      this.writes.packets += accepted.length;
      this.writes.writes += units.length;
      for (const unit of units) if (!tun.write(unit)) this.drop("tun-write");
      // answers the host made while we wrote (a pod's reply) go out now, not after the reader thread's hand-over
      const now = tun.readNow();
      if (now.byteLength) {
        this.sameThreadReads++;
        this.fromTun(now);
      }
    });
    stream.addEventListener("remoteCloseWrite", () => void stream.close().catch(() => {}));
  }

  /** whether one unit from a peer (`[virtio-net header][IPv4 packet]`) may be written to our TUN; counted either way */
  private admit(unit: Uint8Array, from: string, count: { packets: number; bytes: number }): boolean {
    const table = this.table;
    const refused = inboundProblem(table, from, unit, this.cfg.mtu);
    if (refused) {
      const h = refused.header;
      // too big for our MTU: answered as a router would, when the sender forbade fragments
      if (refused.reason === "too-big" && h?.df && table?.ownAddresses[0] !== undefined) {
        const back = this.link(from);
        back.send(Buffer.concat([PLAIN_VNET, fragmentationNeeded(unit.subarray(VNET_HDR_LEN), table.ownAddresses[0], this.cfg.mtu)]));
        back.flush();
      }
      return this.reject(refused.reason, refused.detail);
    }
    count.packets++;
    count.bytes += unit.byteLength - VNET_HDR_LEN;
    return true;
  }

  private reject(reason: Drop, detail: string): false {
    this.drop(reason, detail);
    return false;
  }

  private drop(reason: Drop, detail = "", n = 1): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + n);
    if (this.logBudget.take(reason)) this.ctx.log.warn("pod network packet dropped", { reason, detail: detail || "-", packets: n });
  }

  /** drops by reason, with the units the reader thread refused as larger than any GSO packet */
  private droppedByReason(): Record<string, number> {
    const oversized = this.tun?.oversized ?? 0;
    const all: Record<string, number> = { ...Object.fromEntries(this.drops), ...(oversized ? { oversized } : {}) };
    // the reader thread's, from lane datagrams (lane-*: unknown id, failed authentication, replay, send errors; source, destination ... as from streams)
    for (const [reason, n] of Object.entries(this.laneStats.drops)) all[reason] = (all[reason] ?? 0) + n;
    return all;
  }

  private registerMetrics(): void {
    const m = this.ctx.metrics;
    m.collect("podnet_dropped_total", "Pod network packets dropped, by reason (source/destination: refused from a peer; queue: a peer's queue full; unreachable; no-route; not-ipv4; too-big; malformed; tun-write; oversized; lane-unknown/lane-auth/lane-replay/lane-malformed: datagrams refused; lane-send).", "counter", () =>
      Object.entries(this.droppedByReason()).map(([reason, value]) => ({ labels: { reason }, value })),
    );
    m.collect("podnet_packets_total", "Pod network packets carried, by peer node and direction (a GSO packet, up to 64 KiB of one TCP flow, counts once).", "counter", () => [
      ...[...this.links].map(([node, l]) => ({ labels: { node, direction: "out" }, value: l.counters.packetsOut })),
      ...[...this.inbound].map(([node, c]) => ({ labels: { node, direction: "in" }, value: c.packets })),
    ]);
    m.collect("podnet_lane_packets_total", "Pod network packets carried as lane datagrams, by peer node and direction.", "counter", () =>
      Object.entries(this.laneStats.lanes).flatMap(([node, l]) => [
        { labels: { node, direction: "out" }, value: l.packetsOut },
        { labels: { node, direction: "in" }, value: l.packetsIn },
      ]),
    );
    m.collect("podnet_lanes_up", "Peers whose datagram lane answers.", "gauge", () => [{ value: Object.values(this.laneStats.lanes).filter((l) => l.up).length }]);
    m.collect("podnet_routes", "Other nodes' pod CIDRs routed into the TUN.", "gauge", () => [{ value: this.table?.routed().length ?? 0 }]);
  }

  status(): Record<string, unknown> {
    const t = this.table;
    return {
      podNetwork: {
        device: this.cfg.device,
        mtu: this.cfg.mtu,
        ownCIDRs: t?.own.map((c) => c.text) ?? [],
        routes: t?.routed().map((r) => ({ cidr: r.cidr.text, node: r.node })) ?? [],
        refused: t?.refused ?? [],
        lane: this.tun?.laneOpen ? laneStatus(this.cfg.lane.port, this.lanes?.publicLaneAddress()) : null,
        peers: [...new Set([...this.links.keys(), ...this.inbound.keys(), ...Object.keys(this.laneStats.lanes)])].sort().map((node) => {
          const l = this.links.get(node);
          const i = this.inbound.get(node);
          const d = this.laneStats.lanes[node];
          return {
            node,
            path: l?.path ?? "-",
            packetsOut: l?.counters.packetsOut ?? 0,
            bytesOut: l?.counters.bytesOut ?? 0,
            packetsIn: i?.packets ?? 0,
            bytesIn: i?.bytes ?? 0,
            lane: this.lanes?.laneOf(node) ?? "-",
            lanePacketsOut: d?.packetsOut ?? 0,
            lanePacketsIn: d?.packetsIn ?? 0,
          };
        }),
        dropped: this.droppedByReason(),
        written: { ...this.writes },
        readsAfterWrite: this.sameThreadReads,
      },
    };
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe) u();
    clearInterval(this.routeCheck);
    this.lanes?.stop();
    for (const l of this.links.values()) l.close();
    this.links.clear();
    await this.applying.catch(() => {});
    await this.host?.tearDown().catch((err: Error) => this.ctx.log.warn("pod network chains not removed", { error: err.message }));
    await this.tun?.close();
    this.ctx.log.info("pod network stopped: device and routes removed", { device: this.cfg.device });
  }
}
