// The agent's tunnel module: a libp2p node that keeps reservations on the
// tunnel servers, reaches other agents directly or through a relay, accepts
// proxied streams from verified mesh members, and offers other modules a way
// to open streams to a node (published on the bus as `tunnel`).
import type { Module, ModuleContext, ModuleFactory } from "../module.ts";
import { Identities } from "../../tunnel/identity.ts";
import { Membership } from "../../tunnel/membership.ts";
import { collectFlowMetrics, windowBudget } from "../../tunnel/flow/budget.ts";
import { pacerCounters } from "../../tunnel/flow/gc-pacer.ts";
import { createTunnelNode, sharedPortTransport, type TunnelNode } from "../../tunnel/node.ts";
import { createNoiseCrypto } from "../../tunnel/crypto/index.ts";
import { formatAgentVersion } from "../../tunnel/agent-version.ts";
import { installCrashGuard } from "../../tunnel/crash-guard.ts";
import { describeAddr, hostPortAddr, inCidrs, isCircuit, originOf, tcpAddr } from "../../tunnel/addresses.ts";
import { VERSION } from "../../version.ts";
import type { PeerStatus, ServerStatus } from "../../admin/status.ts";
import { RelayLink } from "./relay-link.ts";
import { PeerDialer, bestConnection, nearestFirst, relayOf } from "./dialer.ts";
import type { RelayCounters } from "../../tunnel/relayed-flows.ts";
import { relayForOthers, relayReservations } from "../../tunnel/relay-service.ts";
import { PathUpgrader } from "./upgrade.ts";
import type { EarlyBytes, NodeStream, ProxyTarget, StreamOrigin, TunnelAccess, TunnelChannel } from "../../model/tunnel.ts";
import type { ServiceConnector } from "../../model/connector.ts";
import { PROXY_PROTOCOL, serveProxyStreams, openProxy } from "./proxy.ts";
import { startSocksFrontDoor, type SocksFrontDoor } from "./socks.ts";
import { SecretMismatches } from "../../tunnel/secret-mismatch.ts";
import { HolePuncher } from "./hole-punch.ts";
import { PunchIcmpFilter } from "./punch-icmp-filter.ts";
import { NAT_MAPPINGS } from "./nat-report.ts";
import { hostPortOf } from "./punch-protocol.ts";
import { TargetPolicy } from "./target-policy.ts";
import { daysLeft, installCertIdentity, type CertIdentity } from "../../tunnel/cert-identity.ts";
import { lookupCertificate, peerIdOfCert, type CertBook } from "../../tunnel/certs.ts";
import { peerIdFromString } from "@libp2p/peer-id";
import { parseCidr4, type Cidr4 } from "../../model/cidr.ts";
import type { Connection, PeerId, Stream } from "@libp2p/interface";

export const tunnelModule: ModuleFactory = {
  name: "tunnel",
  enabled: () => true,
  readyOnStart: true,
  create: (ctx) => new Tunnel(ctx),
};

class Tunnel implements Module {
  readonly name = "tunnel";
  private node?: TunnelNode;
  private links: RelayLink[] = [];
  private dialer?: PeerDialer;
  private upgrader?: PathUpgrader;
  private puncher?: HolePuncher;
  private icmpFilter?: PunchIcmpFilter;
  private membership?: Membership;
  private ids?: Identities;
  private socks?: SocksFrontDoor;
  private socksRetry?: ReturnType<typeof setTimeout>;
  private stopped = false;
  private hintsByNode = new Map<string, string[]>();
  /** every node's IPv4 pod CIDRs (the nodes snapshot) */
  private podCidrs: Cidr4[] = [];
  private unsubscribe: Array<() => void> = [];
  private readonly counters = { streamsOut: 0, streamsIn: 0, bytesIn: 0, bytesOut: 0, streamErrors: 0, accepted: { direct: 0, stock: 0 }, refused: { header: 0, unauthorized: 0, forbidden: 0, busy: 0, dial: 0 } };
  private readonly targets: TargetPolicy;
  private readonly socksRefused = { capacity: 0, credentials: 0 };
  /** identity v2: verified certificates, and the lookups of names we have none for */
  private book?: CertBook;
  private certs?: CertIdentity;

  constructor(private readonly ctx: ModuleContext) {
    this.targets = new TargetPolicy(ctx.config.nodeName, ctx.config.agent.socks5.nodePorts);
  }

  async start(): Promise<void> {
    const { config, log, bus } = this.ctx;
    installCrashGuard(log);
    const ids = (this.ids = new Identities(config.pskSecret));
    const identity = config.identity;
    const membership = (this.membership = new Membership(ids, log, identity !== undefined));
    const crypto = createNoiseCrypto((level, msg) => log[level](msg));
    const secretMismatches = new SecretMismatches(log);
    const t = config.agent.tunnel;
    const node = (this.node = await createTunnelNode({
      role: "agent",
      privateKey: identity?.key ?? (await ids.key(config.nodeName)),
      secret: config.pskSecret,
      userAgent: formatAgentVersion(VERSION, { role: "agent", nodeName: config.nodeName }),
      listen: t.listenAddresses.map((a) => tcpAddr(a, t.listenPort).toString()),
      announce: [...new Set([...t.advertiseAddresses, ...(t.relay.enable ? t.relay.advertiseAddresses : [])])].map((a) => hostPortAddr(a).toString()),
      ...(t.relay.enable ? { relay: { maxReservations: t.relay.maxReservations } } : {}),
      crypto: crypto.crypto,
      membership,
      log: (level, msg) => log[level](msg),
      privateNetwork: t.privateNetwork,
      flow: config.flow,
      onSecretMismatch: (remote, direction) => secretMismatches.record(remote, direction),
      // a peer's address inside a pod CIDR (a CNI bridge's, announced by identify) is
      // reached through the pod network, i.e. through this tunnel: never a path for it
      denyDial: (ma) => this.podCidrs.length > 0 && inCidrs(ma, this.podCidrs),
    }));
    const transport = sharedPortTransport(node);
    // dials to tunnel servers leave from the listening port, so the address a
    // server observes for us is the one a NATed peer can punch to; other dials
    // use ephemeral ports, so they never open our NAT towards a peer early
    // with the 4-tuple a punch needs (transport/tcp.ts)
    // (servers given by name join the set once resolved: RelayLink's onDialTarget)
    const serverTargets = new Set(config.agent.servers.map((hp) => hostPortOf(hostPortAddr(hp).toString())).filter(Boolean));
    if (transport) transport.fromListenPort = (d) => serverTargets.has(hostPortOf(d.ma.toString()));
    this.puncher = new HolePuncher(node, transport, membership, t.listenPort, log);
    await this.puncher.start();
    // only where punching can happen: rounds are coordinated over relayed
    // connections, so an agent without servers (or relay agents) never punches
    if (transport?.mode.sharedPort && t.punchIcmpFilter && config.agent.servers.length > 0) {
      this.icmpFilter = new PunchIcmpFilter(t.listenPort, log);
      await this.icmpFilter.install();
    }
    if (!t.privateNetwork) log.warn("private network is off: anyone can start a handshake; membership is still checked by identity");
    // address hints come only from the controller's `nodes` snapshot (which
    // carries agent.metadata.static.nodes when the source is static)
    this.unsubscribe.push(
      bus.subscribe(
        "nodes",
        (snap) => {
          const next = new Map<string, string[]>();
          for (const n of snap.nodes) next.set(n.name, n.addresses);
          this.hintsByNode = next;
          this.podCidrs = snap.nodes.flatMap((n) => n.podCIDRs.map(parseCidr4).filter((c): c is Cidr4 => c !== undefined));
        },
        "tunnel",
        { replay: true },
      ),
    );
    const hints = (name: string) => this.hintsByNode.get(name) ?? [];
    // members may have us dial only our own service endpoints and the node ports listed
    this.unsubscribe.push(bus.subscribe("services", (snap) => this.targets.update(snap.services), "tunnel", { replay: true }));
    if (t.relay.enable) {
      relayForOthers(node, this.relayed, {
        maxPerPeer: t.relay.maxRelayedConnectionsPerPeer,
        maxPerPeerField: "agent.tunnel.relay.maxRelayedConnectionsPerPeer",
        maxStreamWindowBytes: config.flow.maxStreamWindowKiB * 1024,
        log,
        collect: (n, h, ty, r) => this.ctx.metrics.collect(n, h, ty, r),
      });
      log.info("relaying for other members", { advertise: t.relay.advertiseAddresses.join(",") || "(listen addresses only)", maxReservations: t.relay.maxReservations });
    }
    if (identity) {
      this.certs = await installCertIdentity(node, identity, membership, log, {
        ...(config.trustPaths?.revocationsCache ? { revocationsCache: config.trustPaths.revocationsCache } : {}),
        // a revoked node's reservation on this relay goes with it
        ...(t.relay.enable ? { onRevoked: (peer: string) => void relayReservations(node)?.delete(peerIdFromString(peer)) } : {}),
      });
      this.book = this.certs.book;
    }
    // v2: the name a peer acts under is its certificate's; v1: the one its derived ID gives
    const authorize = identity
      ? async (peer: string, fromNode: string) => (await membership.waitVerified(peerIdFromString(peer), 10_000))?.nodeName === fromNode
      : (peer: string, fromNode: string) => ids.matchesText(peer, fromNode);
    await serveProxyStreams(node, {
      log,
      authorize,
      permit: (req) => this.targets.check(req),
      maxSessions: config.agent.limits.proxySessions,
      maxSessionsPerPeer: config.agent.limits.proxySessionsPerPeer,
      counters: this.counters,
    });
    await node.start();
    log.info("tunnel listening", {
      peerId: node.peerId.toString(),
      addresses: node.getMultiaddrs().map(describeAddr).join(","),
      crypto: crypto.provider,
    });
    this.links = config.agent.servers.map((s) => new RelayLink(s, hostPortAddr(s), node, membership, log, { secretMismatches, onDialTarget: (hp) => serverTargets.add(hp) }));
    if (this.links.length === 0) log.warn("no tunnel servers configured (agent.servers): only direct paths are possible");
    this.dialer = new PeerDialer(node, { hints, relays: () => nearestFirst(this.links.filter((l) => l.reserved)).map((l) => l.relayPrefix()!).filter(Boolean), defaultPort: t.listenPort, usable: (c) => this.usable(c) }, log, secretMismatches);
    this.upgrader = new PathUpgrader(node, membership, hints, t.listenPort, [PROXY_PROTOCOL], log);
    const access: TunnelAccess = {
      open: (nodeName, target, early) => this.open(nodeName, target, early),
      openStream: (nodeName, protocol) => this.openStream(nodeName, protocol),
      preferredConnection: (nodeName) => {
        const peer = this.peerByName.get(nodeName);
        return peer && this.node ? bestConnection(this.node, peer, (c) => this.usable(c))?.id : undefined;
      },
      handle: (protocol, handler) => this.handleStreams(protocol, handler),
      servers: () =>
        nearestFirst(this.links.filter((l) => l.reserved && l.kind === "server")).flatMap((l) => {
          const ip = l.dialedIp();
          return l.peer && ip ? [{ peer: l.peer.toString(), ip }] : [];
        }),
      openRelayStream: async (relayPeer, protocol) => {
        const conn = this.node?.getConnections(peerIdFromString(relayPeer)).find((c) => !isCircuit(c.remoteAddr) && c.status === "open");
        if (!conn) throw new Error(`no connection to relay ${relayPeer}`);
        return conn.newStream(protocol, { signal: AbortSignal.timeout(10_000) });
      },
    };
    bus.publish("tunnel", access);
    if (config.agent.socks5.enable) {
      // known nodes, or any single-label name (a node we have no hint for may still hold a reservation)
      const routable = (name: string) => this.hintsByNode.has(name) || !name.includes(".");
      let connector: ServiceConnector | undefined;
      this.unsubscribe.push(bus.subscribe("connector", (c) => void (connector = c), "tunnel", { replay: true }));
      const limits = {
        ...(config.socks5Credentials ? { credentials: config.socks5Credentials } : {}),
        maxConnections: config.agent.socks5.maxConnections,
        onRefused: (why: "capacity" | "credentials") => void this.socksRefused[why]++,
      };
      const start = () => startSocksFrontDoor(config.agent.socks5.listen, { tunnel: access, connector: () => connector, isKnownNode: routable, selfName: config.nodeName }, log, limits);
      // the default listen address is the bridge IP, which the proxier (started
      // after this module) brings up: until it exists, bind again every 250 ms
      // one attempt at a time: the next is scheduled only after this one failed
      const retry = () => {
        this.socksRetry = setTimeout(() => {
          start().then(
            (s) => {
              if (this.stopped) void s.stop();
              else this.socks = s;
            },
            (err: NodeJS.ErrnoException) => {
              if (err.code !== "EADDRNOTAVAIL") log.error("SOCKS5 cannot listen", { listen: config.agent.socks5.listen, error: err });
              else if (!this.stopped) retry();
            },
          );
        }, 250);
      };
      this.socks = await start().catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "EADDRNOTAVAIL") throw e;
        log.info("SOCKS5 waits for its listen address to exist (the proxier brings up the bridge IP)", { listen: config.agent.socks5.listen });
        retry();
        return undefined;
      });
    }
    // the connection monitor pings every 10 s; ping once now so /status has an RTT from the start
    node.addEventListener("peer:identify", (e) => {
      const peer = e.detail.peerId;
      setTimeout(() => {
        if (this.membership?.claim(peer)?.role !== "agent") return;
        const ping = (node.services as { ping?: { ping(p: typeof peer, o?: object): Promise<number> } }).ping;
        ping?.ping(peer, { signal: AbortSignal.timeout(5000) }).then(
          (ms) => this.firstRtt.set(peer.toString(), ms),
          () => {},
        );
      }, 100);
    });
    this.registerMetrics();
  }

  private readonly firstRtt = new Map<string, number>();
  /** agent.tunnel.relay: what this agent relayed for others */
  private readonly relayed: RelayCounters = { connections: 0, bytes: 0, active: 0, pauses: 0, refused: 0 };

  /** node name → peer ID, for the streams opened by name (preferredConnection is synchronous) */
  private readonly peerByName = new Map<string, PeerId>();

  /** a connection to the agent on `nodeName`: the best open one, else dialled; its peer proven to be that node */
  private async connectionTo(nodeName: string): Promise<Connection> {
    if (!this.node || !this.dialer || !this.ids) throw new Error("tunnel not started");
    const peer = this.book ? await this.peerOfName(nodeName) : await this.ids.peerId(nodeName);
    // the usual case, an open connection to a peer already recorded, costs no further waits
    const conn = bestConnection(this.node, peer, (c) => this.usable(c)) ?? (await this.dialer.connect(nodeName, peer));
    if (this.membership!.claim(peer)?.nodeName !== nodeName && !(await this.membership!.trust(peer, { role: "agent", nodeName }))) {
      throw new Error(`peer ${peer.toString()} did not prove it is ${nodeName}`);
    }
    if (this.peerByName.size < 65536 || this.peerByName.has(nodeName)) this.peerByName.set(nodeName, peer);
    return conn;
  }

  private async openStream(nodeName: string, protocol: string): Promise<NodeStream> {
    const conn = await this.connectionTo(nodeName);
    const stream = await conn.newStream(protocol, { runOnLimitedConnection: true, signal: AbortSignal.timeout(10_000) });
    return { stream, connectionId: conn.id, ...originOf(conn) };
  }

  private async handleStreams(protocol: string, handler: (stream: Stream, fromNode: string, origin: StreamOrigin) => void): Promise<void> {
    if (!this.node || !this.membership) throw new Error("tunnel not started");
    const membership = this.membership;
    await this.node.handle(
      protocol,
      (stream, conn) => {
        void membership.waitVerified(conn.remotePeer, 10_000).then((claim) => {
          if (claim?.role !== "agent") return stream.abort(new Error("not a verified agent"));
          handler(stream, claim.nodeName, { ...originOf(conn), connectionId: conn.id });
        });
      },
      { runOnLimitedConnection: true },
    );
  }

  /** opens a proxy stream to a target reached through node `nodeName` */
  async open(nodeName: string, target: ProxyTarget, early?: EarlyBytes): Promise<TunnelChannel> {
    const conn = await this.connectionTo(nodeName);
    this.counters.streamsOut++;
    try {
      return await openProxy(conn, { ...target, fromNode: this.ctx.config.nodeName }, undefined, early);
    } catch (e) {
      this.counters.streamErrors++;
      throw e;
    }
  }

  /** new streams avoid relayed connections through a server or relay that stopped answering (RelayLink's liveness probe) */
  private usable(conn: Connection): boolean {
    if (!isCircuit(conn.remoteAddr)) return true;
    const relay = relayOf(conn.remoteAddr);
    return !this.links.some((l) => l.suspect && l.peer?.toString() === relay);
  }

  /**
   * identity v2: the peer ID of a node name, from a certificate we verified,
   * else asked of the servers we are connected to (each answer is verified
   * against the CA on its own: a server cannot make up a node)
   */
  private async peerOfName(nodeName: string): Promise<PeerId> {
    const book = this.book!;
    const known = book.ofName(nodeName);
    if (known) return peerIdOfCert(known);
    const errors: string[] = [];
    for (const link of this.links) {
      const conn = link.peer && bestConnection(this.node!, link.peer);
      if (!conn) continue;
      try {
        const cert = await lookupCertificate(conn, nodeName, book);
        if (cert) {
          book.learn(cert);
          return peerIdOfCert(cert);
        }
        errors.push(`${link.address}: unknown`);
      } catch (e) {
        errors.push(`${link.address}: ${(e as Error).message}`);
      }
    }
    // no server knows it (or none is up): its address hints, if any, by whoever answers there
    if (this.hintsByNode.get(nodeName)?.length) {
      const conn = await this.dialer!.connectByHints(nodeName);
      const claim = await this.membership!.waitVerified(conn.remotePeer, 10_000);
      if (claim?.nodeName === nodeName) return conn.remotePeer;
      throw new Error(`cannot reach node ${nodeName}: the node at ${conn.remoteAddr.toString()} is ${claim ? claim.nodeName : "not a verified member"}`);
    }
    throw new Error(`no certificate known for node ${nodeName}${errors.length ? ` (servers: ${errors.join("; ")})` : " (no server connected to ask)"}`);
  }

  private peers(): PeerStatus[] {
    const node = this.node;
    if (!node) return [];
    const out: PeerStatus[] = [];
    for (const p of node.getPeers()) {
      const claim = this.membership?.claim(p);
      if (claim?.role !== "agent") continue;
      const conn = bestConnection(node, p);
      if (!conn) continue;
      const relayed = isCircuit(conn.remoteAddr);
      const relayedReason = relayed ? this.puncher?.relayReason(p) : undefined;
      const cert = this.book?.ofPeer(p.toString());
      out.push({
        nodeName: claim.nodeName,
        peerId: p.toString(),
        path: relayed ? "relayed" : "direct",
        rttMs: typeof conn.rtt === "number" ? conn.rtt : (this.firstRtt.get(p.toString()) ?? null),
        ...(relayedReason ? { relayedReason } : {}),
        ...(cert ? { certificate: { role: cert.role, daysLeft: daysLeft(cert.notAfter) } } : {}),
      });
    }
    return out.sort((a, b) => a.nodeName.localeCompare(b.nodeName));
  }

  private servers(): ServerStatus[] {
    return this.links.map((l) => {
      const rtt = l.rttMs();
      return { address: l.address, connected: l.connected, reservation: l.reserved, ...(l.kind ? { kind: l.kind } : {}), ...(Number.isFinite(rtt) ? { rttMs: rtt } : {}), ...(l.lastError ? { error: l.lastError } : {}), ...(l.downSince !== undefined && l.lastError ? { downS: Math.round((Date.now() - l.downSince) / 1000) } : {}) };
    });
  }

  private registerMetrics(): void {
    const m = this.ctx.metrics;
    m.collect("tunnel_peers", "Peers by path.", "gauge", () => {
      const ps = this.peers();
      return (["direct", "relayed"] as const).map((path) => ({ labels: { path }, value: ps.filter((p) => p.path === path).length }));
    });
    m.collect("tunnel_peer_rtt_ms", "Round-trip time to each peer (ping).", "gauge", () =>
      this.peers()
        .filter((p) => p.rttMs !== null)
        .map((p) => ({ labels: { node: p.nodeName, path: p.path }, value: p.rttMs! })),
    );
    m.collect("tunnel_server_reserved", "1 when a relay reservation is held on the server.", "gauge", () =>
      this.links.map((l) => ({ labels: { server: l.address }, value: l.reserved ? 1 : 0 })),
    );
    m.collect("tunnel_streams_total", "Proxy streams by direction.", "counter", () => [
      { labels: { direction: "out" }, value: this.counters.streamsOut },
      { labels: { direction: "in" }, value: this.counters.streamsIn },
    ]);
    m.collect("identity_certificate_expiry_seconds", "Seconds until this node's certificate expires (identity v2).", "gauge", () =>
      this.certs ? [{ value: Math.round(this.ctx.config.identity!.cert.notAfter - Date.now() / 1000) }] : [],
    );
    m.collect("socks5_connections", "SOCKS5 clients connected now.", "gauge", () => [{ value: this.socks?.connections ?? 0 }]);
    m.collect("socks5_refused_total", "SOCKS5 clients refused: capacity (agent.socks5.maxConnections reached) or credentials (wrong username or password).", "counter", () =>
      Object.entries(this.socksRefused).map(([reason, value]) => ({ labels: { reason }, value })),
    );
    m.collect("tunnel_streams_refused_total", "Inbound proxy streams refused, by reason (forbidden: a target outside the target policy).", "counter", () =>
      Object.entries(this.counters.refused).map(([reason, value]) => ({ labels: { reason }, value })),
    );
    m.collect("tunnel_stream_errors_total", "Proxy streams that failed to open.", "counter", () => [{ value: this.counters.streamErrors }]);
    m.collect("tunnel_bytes_total", "Bytes carried by proxy streams this agent served.", "counter", () => [
      { labels: { direction: "in" }, value: this.counters.bytesIn },
      { labels: { direction: "out" }, value: this.counters.bytesOut },
    ]);
    m.collect("tunnel_path_upgrades_total", "Relayed peers upgraded to a direct connection by dialling back.", "counter", () => [{ value: this.upgrader?.upgrades ?? 0 }]);
    m.collect("tunnel_nat_mapping", "1 for this agent's NAT mapping behaviour as tunnel servers and relays observe it (endpoint-independent, endpoint-dependent, unknown).", "gauge", () => {
      const now = this.puncher?.natReport().mapping ?? "unknown";
      return NAT_MAPPINGS.map((behaviour) => ({ labels: { behaviour }, value: behaviour === now ? 1 : 0 }));
    });
    m.collect("tunnel_hole_punch_attempts_total", "Hole-punch attempts this agent started.", "counter", () => [{ value: this.puncher?.stats.attempts ?? 0 }]);
    collectFlowMetrics((n, h, t, r) => m.collect(n, h, t, r));
    m.collect("tunnel_hole_punch_successes_total", "Relayed peers that became direct by hole punching.", "counter", () => [{ value: this.puncher?.stats.successes ?? 0 }]);
    m.collect("tunnel_hole_punch_failures_total", "Failed hole-punch attempts by reason.", "counter", () =>
      Object.entries(this.puncher?.stats.failures ?? {}).map(([reason, value]) => ({ labels: { reason }, value: value ?? 0 })),
    );
    m.collect("tunnel_hole_punch_last_ms_to_direct", "From a relayed connection's start to the punched direct one, last time.", "gauge", () =>
      this.puncher?.stats.lastMsToDirect === undefined ? [] : [{ value: this.puncher.stats.lastMsToDirect }],
    );
  }

  status(): Record<string, unknown> {
    if (!this.node) return {};
    return {
      peerId: this.node.peerId.toString(),
      servers: this.servers(),
      peers: this.peers(),
      identity: this.certs?.status() ?? { version: 1 },
      tunnelAddresses: this.node.getMultiaddrs().map(String),
      nat: this.puncher?.natReport(),
      ...(this.ctx.config.agent.tunnel.relay.enable ? { relay: { reservations: relayReservations(this.node)?.size ?? 0, ...this.relayed } } : {}),
      holePunch: { publicAddresses: this.puncher?.publicAddrs() ?? [], ...this.puncher?.stats, transport: this.transportStatus(), icmpFilter: this.icmpFilter?.active ?? false },
      proxyStreams: { out: this.counters.streamsOut, in: this.counters.streamsIn, outFailed: this.counters.streamErrors, acceptedDirect: this.counters.accepted.direct },
      flow: { ...windowBudget.counters(), ...pacerCounters() },
    };
  }

  /** which dial mode is active, and how many dials left from the listening port, from ephemeral ports, or fell back */
  private transportStatus(): Record<string, unknown> | undefined {
    const t = this.node && sharedPortTransport(this.node);
    return t && { ...t.mode, dials: { ...t.counters } };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.certs?.stop();
    clearTimeout(this.socksRetry);
    for (const u of this.unsubscribe) u();
    await this.socks?.stop();
    this.upgrader?.shutdown();
    this.puncher?.stop();
    await this.icmpFilter?.remove().catch((err: Error) => this.ctx.log.warn("punch filter not removed", { error: err.message }));
    await Promise.all(this.links.map((l) => l.stop()));
    await this.node?.stop();
  }
}
