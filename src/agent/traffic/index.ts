// The traffic module: one listener per intercepted service port on the
// bridge IP (the proxier DNATs ClusterIP:port there), a backend chosen per
// connection by the service's policy, and bytes carried to it directly or
// through the tunnel. It also offers the same connect logic to the SOCKS5
// front door (bus topic `connector`).
import { createSocket } from "node:dgram";
import type { Module, ModuleContext, ModuleFactory } from "../module.ts";
import type { Service, ServicePort } from "../../model/index.ts";
import type { EarlyBytes, TunnelAccess } from "../../model/tunnel.ts";
import { ClientPrefix } from "./client-prefix.ts";
import { listenTcp, type BunTcpSocket, type TcpListener } from "../../net/bun-socket.ts";
import type { ListenerEntry } from "../../model/listeners.ts";
import { listenerKey } from "../proxier/ruleset.ts";
import { resetSocket, pipeSocketStream } from "../../tunnel/proxy/pipe.ts";
import { connectBackend, Cooldown, NoBackendError, type Upstream } from "./connect.ts";
import { policyFor, type Policy } from "./policy.ts";
import { pipeSockets } from "../../tunnel/proxy/socket-pipe.ts";
import { UdpForwarder } from "./udp.ts";
import { resolveTarget } from "./resolve.ts";

const NO_ENDPOINTS_WARN_EVERY_MS = 60_000;

export const trafficModule: ModuleFactory = {
  name: "traffic",
  enabled: () => true,
  readyOnStart: true,
  create: (ctx) => new Traffic(ctx),
};

interface Listener {
  key: string;
  service: Service;
  port: ServicePort;
  policy: Policy;
  policyKey: string;
  listenPort: number;
  tcp?: TcpListener;
  udp?: UdpForwarder;
}

const policyKeyOf = (s: Service) => `${s.lbPolicy}/${s.sessionAffinity}/${s.sessionAffinityTimeoutSeconds}`;

class Traffic implements Module {
  readonly name = "traffic";
  private readonly listeners = new Map<string, Listener>();
  private tunnel?: TunnelAccess;
  private services: Service[] = [];
  private unsub: Array<() => void> = [];
  private generation = 0;
  private readonly cooldown = new Cooldown();
  private syncing: Promise<void> = Promise.resolve();
  private readonly lastNoEndpointsWarn = new Map<string, number>();
  private readonly udpRefused = { client: 0, port: 0 };
  private readonly stats = { connections: new Map<string, number>(), bytes: new Map<string, number>(), dialFailures: new Map<string, number>(), picks: new Map<string, number>(), refused: new Map<string, number>() };

  constructor(private readonly ctx: ModuleContext) {}

  private get intercept(): boolean {
    return this.ctx.config.agent.proxy.enable;
  }

  async start(): Promise<void> {
    const { bus } = this.ctx;
    this.unsub.push(bus.subscribe("tunnel", (t) => void (this.tunnel = t), "traffic", { replay: true }));
    this.unsub.push(
      bus.subscribe(
        "services",
        (snap) => {
          this.services = snap.services;
          const at = performance.now();
          this.syncing = this.syncing.then(() => this.sync(snap.services, at)).catch((e) => this.ctx.log.error("listener sync failed", { error: e }));
        },
        "traffic",
        { replay: true },
      ),
    );
    bus.publish("connector", {
      resolve: (host, port) => resolveTarget(this.services, host, port, this.ctx.config.agent.dns.clusterDomain),
      connect: (service, port, clientIp, early) => this.connect(service, port, clientIp, early),
    });
    this.registerMetrics();
  }

  private inc(m: Map<string, number>, key: string, by = 1): void {
    m.set(key, (m.get(key) ?? 0) + by);
  }

  private connect(service: Service, port: ServicePort, clientIp: string, early?: EarlyBytes): Promise<Upstream> {
    const key = listenerKey(service, port.port, port.protocol);
    const l = this.listeners.get(key);
    const policy = l?.policy ?? policyFor(service);
    const name = `${service.namespace}/${service.name}`;
    return connectBackend(service, port, policy, clientIp, {
      nodeName: this.ctx.config.nodeName,
      tunnel: this.tunnel,
      coolingDown: this.cooldown.active(),
      early,
      onFailure: (ep, error) => {
        this.cooldown.add(ep.ip);
        this.inc(this.stats.dialFailures, name);
        this.ctx.log.warn("backend dial failed, trying the next", { service: name, endpoint: ep.ip, node: ep.nodeName, error });
      },
    }).then((up) => {
      this.inc(this.stats.picks, `${name}|${up.endpoint.ip}`);
      return up;
    });
  }

  /** brings listeners in line with the snapshot, then publishes the table */
  private async sync(services: Service[], snapshotAt: number): Promise<void> {
    if (!this.intercept) return;
    const want = new Map<string, { service: Service; port: ServicePort }>();
    for (const s of services) {
      if (s.headless || s.type !== "ClusterIP" || s.clusterIPs.length === 0) continue;
      for (const p of s.ports) want.set(listenerKey(s, p.port, p.protocol), { service: s, port: p });
    }
    for (const [key, l] of this.listeners) {
      if (want.has(key)) continue;
      this.closeListener(l);
      this.listeners.delete(key);
    }
    for (const [key, w] of want) {
      const l = this.listeners.get(key);
      if (l) {
        l.service = w.service;
        l.port = w.port;
        const pk = policyKeyOf(w.service);
        if (pk !== l.policyKey) {
          l.policy = policyFor(w.service);
          l.policyKey = pk;
        }
        continue;
      }
      try {
        this.listeners.set(key, await this.open(key, w.service, w.port));
      } catch (e) {
        this.ctx.log.error("cannot open listener", { service: key, error: e });
      }
    }
    const entries: ListenerEntry[] = [...this.listeners.values()].map((l) => ({
      service: `${l.service.namespace}/${l.service.name}`,
      portName: l.port.name,
      clusterIPs: l.service.clusterIPs,
      port: l.port.port,
      protocol: l.port.protocol,
      listenPort: l.listenPort,
    }));
    this.ctx.bus.publish("listeners", { bridgeIP: this.ctx.config.agent.proxy.bridgeDeviceIP, generation: ++this.generation, snapshotAt, entries });
  }

  private open(key: string, service: Service, port: ServicePort): Promise<Listener> {
    const host = this.ctx.config.agent.proxy.bridgeDeviceIP;
    const l: Listener = { key, service, port, policy: policyFor(service), policyKey: policyKeyOf(service), listenPort: 0 };
    const name = `${service.namespace}/${service.name}`;
    if (port.protocol === "UDP") {
      return new Promise((resolve, reject) => {
        const sock = createSocket("udp4");
        sock.once("error", reject);
        sock.bind(0, host, () => {
          sock.off("error", reject);
          sock.on("error", (e) => this.ctx.log.warn("udp listener error", { service: key, error: e }));
          l.listenPort = sock.address().port;
          l.udp = new UdpForwarder(sock, {
            service: () => l.service,
            port: l.port,
            policy: () => l.policy,
            nodeName: this.ctx.config.nodeName,
            tunnel: () => this.tunnel,
            log: this.ctx.log,
            onDatagram: (_dir, n) => this.inc(this.stats.bytes, name, n),
            maxPerClient: this.ctx.config.agent.limits.udpSessionsPerClient,
            maxSessions: this.ctx.config.agent.limits.udpSessionsPerPort,
            onRefused: (why) => this.udpRefused[why]++,
          });
          resolve(l);
        });
      });
    }
    // Bun's own sockets: a new connection costs less time than with node:net (src/net/bun-socket.ts)
    try {
      l.tcp = listenTcp(host, 0, (sock) => this.onTcp(l, sock));
    } catch (e) {
      return Promise.reject(e);
    }
    l.listenPort = l.tcp.port;
    return Promise.resolve(l);
  }

  private onTcp(l: Listener, client: BunTcpSocket): void {
    client.on("error", () => {});
    const name = `${l.service.namespace}/${l.service.name}`;
    const clientIp = client.remoteAddress ?? "";
    if (!l.service.endpoints.some((e) => e.ready)) {
      // no backend: refuse at once (RST), never leave the client hanging
      this.inc(this.stats.refused, name);
      this.warnNoEndpoints(name, `${l.service.clusterIPs[0] ?? ""}:${l.port.port}`);
      resetSocket(client);
      return;
    }
    this.inc(this.stats.connections, name);
    const prefix = new ClientPrefix(client);
    this.connect(l.service, l.port, clientIp, prefix).then(
      (up) => {
        const count = (_d: string, n: number) => this.inc(this.stats.bytes, name, n);
        const unsent = prefix.release();
        // the pipe counts what it sends itself
        count("out", up.kind === "socket" ? prefix.byteLength : prefix.byteLength - (unsent?.byteLength ?? 0));
        if (client.destroyed) {
          if (up.kind === "socket") up.socket.destroy();
          else up.channel.stream.abort(new Error("client gone"));
          return;
        }
        if (up.kind === "socket") {
          if (unsent) up.socket.write(unsent);
          void pipeSockets(client, up.socket, count);
        } else
          void pipeSocketStream(client, up.channel.stream, { toSocket: up.channel.initial, toStream: unsent, onBytes: count }).then((r) => {
            if (r.error) this.ctx.log.debug("tunnelled connection ended by an error", { service: name, client: clientIp, bytesIn: r.bytesIn, bytesOut: r.bytesOut, error: r.error.message });
          });
      },
      (e) => {
        prefix.release();
        this.ctx.log.warn("no backend reachable, closing client connection", { service: name, client: clientIp, error: e instanceof NoBackendError ? e.message : String(e) });
        resetSocket(client);
      },
    );
  }

  /** one line per service a minute, however many clients are refused: the counter has the rest */
  private warnNoEndpoints(service: string, address: string): void {
    const now = Date.now();
    if (now - (this.lastNoEndpointsWarn.get(service) ?? -Infinity) < NO_ENDPOINTS_WARN_EVERY_MS) return;
    this.lastNoEndpointsWarn.set(service, now);
    this.ctx.log.warn("service has no ready endpoints, refusing its connections", { service, address, refused: this.stats.refused.get(service) ?? 0 });
  }

  private closeListener(l: Listener): void {
    l.tcp?.close();
    l.udp?.close();
  }

  private registerMetrics(): void {
    const m = this.ctx.metrics;
    const per = (map: Map<string, number>, label = "service") => () => [...map].map(([k, v]) => ({ labels: { [label]: k }, value: v }));
    m.collect("traffic_connections_total", "Client connections accepted, per service.", "counter", per(this.stats.connections));
    m.collect("traffic_bytes_total", "Bytes carried both ways, per service.", "counter", per(this.stats.bytes));
    m.collect("traffic_dial_failures_total", "Backend dials that failed, per service.", "counter", per(this.stats.dialFailures));
    m.collect("traffic_refused_total", "Connections refused because the service had no ready endpoint.", "counter", per(this.stats.refused));
    m.collect("traffic_udp_refused_total", "UDP datagrams dropped because they would open a session past a bound: client (agent.limits.udpSessionsPerClient) or port (udpSessionsPerPort).", "counter", () =>
      Object.entries(this.udpRefused).map(([reason, value]) => ({ labels: { reason }, value })),
    );
    m.collect("traffic_backend_selections_total", "Backends chosen, per service and endpoint.", "counter", () =>
      [...this.stats.picks].map(([k, v]) => {
        const [service, endpoint] = k.split("|");
        return { labels: { service: service!, endpoint: endpoint! }, value: v };
      }),
    );
    m.collect("traffic_listeners", "Listeners open, by protocol.", "gauge", () =>
      (["TCP", "UDP"] as const).map((p) => ({ labels: { protocol: p }, value: [...this.listeners.values()].filter((l) => l.port.protocol === p).length })),
    );
  }

  status(): Record<string, unknown> {
    const host = this.ctx.config.agent.proxy.bridgeDeviceIP;
    return {
      listeners: [...this.listeners.values()].map((l) => {
        const byNode: Record<string, number> = {};
        for (const e of l.service.endpoints) if (e.ready) byNode[e.nodeName || "(direct)"] = (byNode[e.nodeName || "(direct)"] ?? 0) + 1;
        return {
          service: `${l.service.namespace}/${l.service.name}`,
          protocol: l.port.protocol,
          address: `${l.service.clusterIPs[0] ?? ""}:${l.port.port}`,
          listenPort: l.listenPort,
          listen: `${host}:${l.listenPort}`,
          endpointsByNode: byNode,
        };
      }),
    };
  }

  async stop(): Promise<void> {
    for (const u of this.unsub) u();
    for (const l of this.listeners.values()) this.closeListener(l);
    this.listeners.clear();
  }
}
