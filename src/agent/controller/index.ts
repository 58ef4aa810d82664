// The controller: learns Services, their endpoints and Nodes from the
// Kubernetes API (MetaServer, kubeconfig, in-cluster) or from the config
// file, and publishes whole `services` and `nodes` snapshots on the bus.
// Ready after the first complete sync.
import { watch, type FSWatcher } from "node:fs";
import type { Module, ModuleContext, ModuleFactory } from "../module.ts";
import { fromKubeconfig, inCluster, plain, type KubeEndpoint } from "../../kube/endpoint.ts";
import { kubeFetch } from "../../kube/http.ts";
import { Reflector } from "../../kube/reflector.ts";
import { loadConfig, ConfigError } from "../../config/load.ts";
import { buildServices, nodeFrom } from "./convert.ts";
import { KIND_SCHEMAS, rejectionOf } from "./objects.ts";
import { staticNodes, staticServices } from "./static-source.ts";
import { SnapshotPublisher } from "./publisher.ts";
import type { Node, Service } from "../../model/index.ts";

export const controllerModule: ModuleFactory = {
  name: "controller",
  enabled: () => true,
  readyOnStart: false,
  create: (ctx) => new Controller(ctx),
};

class Controller implements Module {
  readonly name = "controller";
  private publisher: SnapshotPublisher;
  private reflectors: { services?: Reflector; slices?: Reflector; endpoints?: Reflector; nodes?: Reflector; destinationRules?: Reflector } = {};
  private endpoint?: KubeEndpoint;
  private destinationRulesPath = "";
  private endpointsApi: "discovery.k8s.io/v1 EndpointSlices" | "v1 Endpoints" | "" = "";
  private staticState?: { services: Service[]; nodes: Node[] };
  private fileWatcher?: FSWatcher;
  private stopped = false;
  private discovery?: Promise<void>;
  private readonly onHup = () => this.reloadStatic("SIGHUP");
  private reloads = { ok: 0, failed: 0 };

  constructor(private readonly ctx: ModuleContext) {
    this.publisher = new SnapshotPublisher(ctx.bus, () => this.build());
  }

  async start(): Promise<void> {
    const { config, log } = this.ctx;
    const md = config.agent.metadata;
    if (md.source === "static") {
      this.staticState = { services: staticServices(md.static.services), nodes: staticNodes(md.static.nodes) };
      this.publisher.flush();
      this.ctx.setReady(true);
      log.info("static metadata loaded", { services: this.staticState.services.length, nodes: this.staticState.nodes.length });
      process.on("SIGHUP", this.onHup);
      if (config.configPath) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          this.fileWatcher = watch(config.configPath, () => {
            clearTimeout(timer);
            timer = setTimeout(() => this.reloadStatic("file changed"), 200);
          });
        } catch (e) {
          log.warn("cannot watch the config file; reload with SIGHUP", { error: e });
        }
      }
      this.registerMetrics();
      return;
    }
    const k = md.kubernetes;
    this.endpoint = k.kubeconfig ? fromKubeconfig(k.kubeconfig) : k.inCluster ? inCluster() : plain(k.server);
    log.info("kubernetes metadata source", { server: this.endpoint.server, via: this.endpoint.source });
    this.discovery = this.discoverAndStart();
    this.registerMetrics();
  }

  /**
   * The DestinationRule collection path when Istio's CRD is served (v1, else
   * v1beta1, else v1alpha3), or "" when it is not. Checked once at start.
   */
  private async discoverDestinationRules(): Promise<string> {
    for (const version of ["v1", "v1beta1", "v1alpha3"]) {
      const path = `/apis/networking.istio.io/${version}`;
      const res = await kubeFetch(this.endpoint!, path, { timeoutMs: 10_000 });
      if (res.status >= 500) {
        await res.body?.cancel();
        throw new Error(`discovery of ${path}: HTTP ${res.status}`);
      }
      if (!res.ok) {
        await res.body?.cancel();
        continue;
      }
      const body = (await res.json()) as { resources?: Array<{ name: string }> };
      if (body.resources?.some((r) => r.name === "destinationrules")) {
        this.ctx.log.info("istio DestinationRules served; their loadBalancer policies apply", { version });
        return `${path}/destinationrules`;
      }
    }
    return "";
  }

  /** EndpointSlices when served, else v1 Endpoints (KubeEdge MetaServer, old clusters) */
  private async discoverAndStart(): Promise<void> {
    const { log } = this.ctx;
    const ep = this.endpoint!;
    const k = this.ctx.config.agent.metadata.kubernetes;
    let delay = 500;
    while (!this.stopped) {
      try {
        const res = await kubeFetch(ep, "/apis/discovery.k8s.io/v1", { timeoutMs: 10_000 });
        if (res.status >= 500 || res.status === 401 || res.status === 403) {
          await res.body?.cancel();
          throw new Error(`discovery: HTTP ${res.status}`);
        }
        let slices = false;
        if (res.ok) {
          // the group may be served without endpointslices in it
          const body = (await res.json()) as { resources?: Array<{ name: string }> };
          slices = !body.resources || body.resources.some((r) => r.name === "endpointslices");
        } else await res.body?.cancel();
        this.endpointsApi = slices ? "discovery.k8s.io/v1 EndpointSlices" : "v1 Endpoints";
        this.destinationRulesPath = await this.discoverDestinationRules();
        break;
      } catch (e) {
        log.warn("apiserver unreachable, retrying discovery", { server: ep.server, error: e, retryMs: delay });
        await Bun.sleep(delay);
        delay = Math.min(delay * 2, 30_000);
      }
    }
    if (this.stopped) return;
    log.info("endpoints source", { api: this.endpointsApi });
    const onChange = () => this.publisher.poke();
    const mk = (resource: string, path: string) => {
      const schema = KIND_SCHEMAS[resource]!;
      return new Reflector({
        endpoint: ep,
        path,
        resource,
        log,
        onChange,
        validate: (o) => rejectionOf(schema, o),
        maxListBytes: k.maxListPageMiB * 1024 * 1024,
        maxEventBytes: k.maxEventKiB * 1024,
        maxObjects: k.maxObjects,
      });
    };
    this.reflectors.services = mk("services", "/api/v1/services");
    if (this.endpointsApi.startsWith("discovery")) this.reflectors.slices = mk("endpointslices", "/apis/discovery.k8s.io/v1/endpointslices");
    else this.reflectors.endpoints = mk("endpoints", "/api/v1/endpoints");
    this.reflectors.nodes = mk("nodes", "/api/v1/nodes");
    if (this.destinationRulesPath) this.reflectors.destinationRules = mk("destinationrules", this.destinationRulesPath);
    for (const r of Object.values(this.reflectors)) r?.start();
    const required = [this.reflectors.services, this.reflectors.slices ?? this.reflectors.endpoints];
    await Promise.all(required.map((r) => r!.synced));
    // DestinationRules choose policies: give them a moment so the first
    // snapshot balances right, but never hold readiness on an optional CRD
    // (RBAC may forbid listing it); a late sync republishes.
    const dr = this.reflectors.destinationRules;
    if (dr) await Promise.race([dr.synced, Bun.sleep(5_000)]);
    if (this.stopped) return;
    this.publisher.flush();
    this.ctx.setReady(true);
    log.info("first sync complete", { services: this.reflectors.services.cache.size });
  }

  private build(): { services: Service[]; nodes: Node[] } | undefined {
    if (this.staticState) return this.staticState;
    const r = this.reflectors;
    const epSource = r.slices ?? r.endpoints;
    if (!r.services || !epSource || r.services.status().relists === 0 || epSource.status().relists === 0) return undefined;
    const services = buildServices({
      services: r.services.cache.values(),
      slices: r.slices ? r.slices.cache.values() : undefined,
      endpoints: r.endpoints ? r.endpoints.cache.values() : undefined,
      destinationRules: r.destinationRules?.cache.values(),
    });
    const nodes = r.nodes ? [...r.nodes.cache.values()].map(nodeFrom).sort((a, b) => a.name.localeCompare(b.name)) : [];
    return { services, nodes };
  }

  private reloadStatic(why: string): void {
    const { config, log } = this.ctx;
    if (!config.configPath) return;
    try {
      const next = loadConfig(config.configPath, { role: "agent" });
      const st = next.agent.metadata.static;
      this.staticState = { services: staticServices(st.services), nodes: staticNodes(st.nodes) };
      this.reloads.ok++;
      log.info("static metadata reloaded", { reason: why, services: this.staticState.services.length, nodes: this.staticState.nodes.length });
      this.publisher.flush();
    } catch (e) {
      this.reloads.failed++;
      const problems = e instanceof ConfigError ? e.problems.join("; ") : (e as Error).message;
      log.warn("config reload failed, keeping the previous services", { reason: why, error: problems });
    }
  }

  private registerMetrics(): void {
    const m = this.ctx.metrics;
    const stats = () => Object.values(this.reflectors).filter((r): r is Reflector => !!r).map((r) => r.status());
    m.collect("controller_watch_restarts_total", "Watches restarted (server timeout or reconnect).", "counter", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.watchRestarts })));
    m.collect("controller_relists_total", "Full LISTs (first sync, 410 Gone).", "counter", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.relists })));
    m.collect("controller_events_total", "Watch events applied.", "counter", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.events })));
    m.collect("controller_malformed_total", "Malformed events or objects skipped.", "counter", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.malformed })));
    m.collect("controller_oversized_total", "LIST pages, watch events or objects past agent.metadata.kubernetes.maxListPageMiB, maxEventKiB or maxObjects.", "counter", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.oversized })));
    m.collect("controller_rejected_objects", "Objects from the metadata source refused by their schema, now (listed in the status).", "gauge", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.rejectedNow })));
    m.collect("controller_rejections_total", "Rejections of objects from the metadata source (each new reason counts once).", "counter", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.rejectedTotal })));
    m.collect("controller_synced", "1 while the resource's watch is up.", "gauge", () => stats().map((s) => ({ labels: { resource: s.resource }, value: s.state === "synced" ? 1 : 0 })));
    m.collect("services", "Services in the current snapshot.", "gauge", () => [{ value: this.ctx.bus.latest("services")?.services.length ?? 0 }]);
    m.collect("config_reloads_total", "Static metadata reloads by result.", "counter", () => [
      { labels: { result: "ok" }, value: this.reloads.ok },
      { labels: { result: "failed" }, value: this.reloads.failed },
    ]);
  }

  status(): Record<string, unknown> {
    const snap = this.ctx.bus.latest("services");
    return {
      services: snap?.services.length ?? 0,
      metadata: this.staticState
        ? { source: "static", reloads: this.reloads }
        : {
            source: "kubernetes",
            server: this.endpoint?.server ?? "",
            endpointsApi: this.endpointsApi,
            resources: Object.values(this.reflectors)
              .filter((r): r is Reflector => !!r)
              .map((r) => r.status()),
          },
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    process.off("SIGHUP", this.onHup);
    this.fileWatcher?.close();
    this.publisher.stop();
    await Promise.all(Object.values(this.reflectors).map((r) => r?.stop()));
  }
}
