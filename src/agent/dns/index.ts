// The DNS module: answers the cluster zone from the `services` snapshot on
// UDP and TCP at agent.dns.listen, and forwards every other name upstream
// through a small cache.
import { readFileSync } from "node:fs";
import type { Socket as UdpSocket } from "node:dgram";
import type { Module, ModuleContext, ModuleFactory } from "../module.ts";
import { parseHostPort, type HostPort } from "../../config/net.ts";
import { ensureBridgeDevice, type BridgeDevice } from "../proxier/device.ts";
import { buildZone, type Zone } from "./zone.ts";
import { AnswerCache } from "./cache.ts";
import { Forwarder } from "./forward.ts";
import { Resolver } from "./resolver.ts";
import { chooseUpstreams, formatUpstream } from "./upstreams.ts";
import { listenUdp } from "./server-udp.ts";
import { DEFAULT_TCP_LIMITS, listenTcp, type TcpListener } from "./server-tcp.ts";
import { SourceRateLimit } from "./rate-limit.ts";
import { dnsMetrics } from "./metrics.ts";

const RESOLV_CONF = "/etc/resolv.conf";
const UPSTREAM_TIMEOUT_MS = 2_000;

export const dnsModule: ModuleFactory = {
  name: "dns",
  enabled: (config) => config.agent.dns.enable,
  // ready once the first snapshot is loaded: before it, cluster names get SERVFAIL
  readyOnStart: false,
  create: (ctx) => new Dns(ctx),
};

class Dns implements Module {
  readonly name = "dns";
  private zone: Zone;
  private readonly cache: AnswerCache;
  private readonly forwarder: Forwarder;
  private readonly resolver: Resolver;
  private readonly listen: HostPort;
  private readonly m;
  private udp?: UdpSocket;
  private tcp?: TcpListener;
  private device?: BridgeDevice;
  private unsubscribe?: () => void;
  private readonly warned = new Map<string, number>();
  private readonly upstreamSource: string;
  private queries = 0;

  constructor(private readonly ctx: ModuleContext) {
    const dns = ctx.config.agent.dns;
    this.listen = parseHostPort(dns.listen)!;
    this.zone = buildZone(undefined, dns.clusterDomain, dns.ttl);
    this.cache = new AnswerCache(dns.cacheSize, dns.cacheTTL);
    this.m = dnsMetrics(ctx.metrics, this.cache, () => this.zone);

    let resolvConf: string | undefined;
    if (!dns.upstreamServers.length) {
      try {
        resolvConf = readFileSync(RESOLV_CONF, "utf8");
      } catch (e) {
        ctx.log.warn("cannot read resolv.conf; names outside the cluster will fail", { path: RESOLV_CONF, error: e });
      }
    }
    const choice = chooseUpstreams(dns.upstreamServers, resolvConf, this.listen);
    this.upstreamSource = choice.source;
    if (choice.skipped.length) ctx.log.info("left ourselves out of the upstreams", { skipped: choice.skipped.join(",") });
    this.forwarder = new Forwarder(choice.upstreams, {
      timeoutMs: UPSTREAM_TIMEOUT_MS,
      onAttempt: (upstream, result, seconds, detail) => {
        this.m.upstream(upstream, result, seconds);
        if (result !== "ok") this.rateLimited(`upstream ${upstream} ${result}`, () => ctx.log.warn("upstream failed", { upstream, result, ...(detail ? { error: detail } : {}) }));
      },
    });
    this.resolver = new Resolver(() => this.zone, this.cache, this.forwarder, {
      answered: (type, rcode, source) => {
        this.queries++;
        this.m.query(type, rcode, source);
      },
      rejected: (reason) => {
        this.m.rejected(reason);
        this.rateLimited(`rejected ${reason}`, () => ctx.log.debug("malformed or unsupported packet", { reason }));
      },
      unresolved: (name, type) => this.rateLimited("unresolved", () => ctx.log.warn("no upstream answered", { name, type, upstreams: this.forwarder.upstreams.length })),
      rateLimited: (client) => {
        this.m.rateLimited();
        this.rateLimited("rate limited", () => ctx.log.warn("a client is past its rate of forwarded lookups; answering REFUSED", { client, perSecond: dns.forwardRatePerSource }));
      },
    }, new SourceRateLimit(dns.forwardRatePerSource));
  }

  async start(): Promise<void> {
    const { config, log, bus } = this.ctx;
    const { proxy, dns } = config.agent;
    // The proxier brings the bridge IP up when it runs; without it, we do.
    if (!proxy.enable && this.listen.host === proxy.bridgeDeviceIP) {
      this.device = await ensureBridgeDevice(proxy.bridgeDeviceName, proxy.bridgeDeviceIP, log);
    }
    const onError = (e: unknown) => this.rateLimited("socket error", () => log.warn("dns socket error", { error: e }));
    const handle = (packet: Buffer, transport: "udp" | "tcp", source: string) => this.resolver.handle(packet, transport, source);
    try {
      this.udp = await listenUdp(this.listen, handle, onError);
      this.tcp = await listenTcp(this.listen, handle, onError, { idleMs: dns.tcpIdleSeconds * 1000, maxConnections: dns.tcpMaxConnections, maxPipelined: DEFAULT_TCP_LIMITS.maxPipelined }, () => {
        this.m.tcpRefused();
        this.rateLimited("tcp cap", () => log.warn("dns TCP connection cap reached, refusing clients", { maxConnections: dns.tcpMaxConnections }));
      });
    } catch (e) {
      await this.stop();
      throw new Error(`cannot listen on ${dns.listen}: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.unsubscribe = bus.subscribe(
      "services",
      (snap) => {
        const t0 = performance.now();
        this.zone = buildZone(snap, dns.clusterDomain, dns.ttl);
        log.debug("zone rebuilt", { generation: snap.generation, services: snap.services.length, records: this.zone.size, ms: Math.round(performance.now() - t0) });
        this.ctx.setReady(true);
      },
      "dns",
      { replay: true },
    );
    const upstreams = this.forwarder.upstreams.map(formatUpstream);
    log.info("dns listening", { listen: dns.listen, zone: this.zone.domain, upstreams: upstreams.join(",") || "none", upstreamSource: this.upstreamSource });
    if (!upstreams.length) log.warn("no upstream resolvers: names outside the cluster get SERVFAIL");
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = this.tcp = undefined;
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    if (tcp) await tcp.close();
    const device = this.device;
    this.device = undefined;
    if (device) {
      try {
        await device.remove();
      } catch (e) {
        this.ctx.log.warn("could not remove the bridge device", { error: e });
      }
    }
  }

  status(): Record<string, unknown> {
    return {
      dns: {
        listen: this.ctx.config.agent.dns.listen,
        zone: this.zone.domain,
        generation: this.zone.generation,
        records: this.zone.size,
        names: this.zone.records.size + this.zone.reverse.size,
        queries: this.queries,
        cacheEntries: this.cache.size,
        upstreams: this.forwarder.upstreams.map(formatUpstream),
      },
    };
  }

  /** at most one log line per kind of trouble per 10 s: a flood must not become a flood of logs */
  private rateLimited(kind: string, emit: () => void): void {
    const now = Date.now();
    if ((this.warned.get(kind) ?? 0) > now - 10_000) return;
    this.warned.set(kind, now);
    emit();
  }
}
