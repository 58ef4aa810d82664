// The controller against a fake apiserver that speaks the real protocol:
// real HTTP, chunked watch streams, bookmarks, 410s, outages.
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FakeApiServer } from "./fake-apiserver/index.ts";
import { controllerModule } from "../../src/agent/controller/index.ts";
import { Bus } from "../../src/agent/bus.ts";
import { Metrics } from "../../src/admin/metrics.ts";
import { buildConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/log.ts";
import type { Module } from "../../src/agent/module.ts";
import type { Service, ServiceSnapshot } from "../../src/model/index.ts";
import { waitFor } from "../lab/wait.ts";
import { tempDir } from "../util/temp.ts";

const dir = tempDir("edgemesh-kube");
writeFileSync(join(dir, "psk"), "kube-test-secret-0123456789abcdef");

interface Harness {
  api: FakeApiServer;
  mod: Module;
  snaps: ServiceSnapshot[];
  logs: string[];
  ready: () => boolean;
  svc(name: string, ns?: string): Service | undefined;
}
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c().catch(() => {});
});

async function start(api: FakeApiServer, kubernetes: Record<string, unknown> = { server: api.url }): Promise<Harness> {
  const config = buildConfig({ psk: "psk", nodeName: "edge1", agent: { metadata: { source: "kubernetes", kubernetes } } }, dir, "", { role: "agent" });
  const logs: string[] = [];
  const log = createLogger("controller", "debug", { write: (l) => void logs.push(l) });
  const bus = new Bus(log);
  const snaps: ServiceSnapshot[] = [];
  bus.subscribe("services", (s) => void snaps.push(s));
  let ready = false;
  const mod = controllerModule.create({ config, bus, log, metrics: new Metrics(), setReady: (r) => (ready = r) });
  await mod.start();
  cleanups.push(() => mod.stop());
  return {
    api,
    mod,
    snaps,
    logs,
    ready: () => ready,
    svc: (name, ns = "demo") => snaps.at(-1)?.services.find((s) => s.name === name && s.namespace === ns),
  };
}

async function fake(opts: ConstructorParameters<typeof Object>[0] = {}): Promise<FakeApiServer> {
  const api = await FakeApiServer.start(opts as never);
  cleanups.push(() => api.stop());
  return api;
}

const service = (name: string, port = 80, extra: Record<string, unknown> = {}) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: "demo", ...extra },
  spec: { clusterIP: "", ports: [{ name: "http", port, targetPort: "http", protocol: "TCP" }] },
});
const slice = (svc: string, ips: string[], port = 8080, node = "edge2") => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: `${svc}-abc`, namespace: "demo", labels: { "kubernetes.io/service-name": svc } },
  addressType: "IPv4",
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: node })),
  ports: [{ name: "http", port, protocol: "TCP" }],
});
const until = <T>(f: () => T | undefined | false, what: string, timeoutMs = 5000) => waitFor(f, { timeoutMs, intervalMs: 20, description: what });

describe("controller with the Kubernetes source", () => {
  test("full lifecycle reaches the snapshot: add service, add endpoints, scale, change port, delete", async () => {
    const api = await fake();
    const h = await start(api);
    await until(() => h.ready(), "first sync");
    api.create("services", service("web"));
    await until(() => h.svc("web"), "service appears");
    expect(h.svc("web")!.endpoints).toEqual([]);
    expect(h.svc("web")!.clusterIPs[0]).toMatch(/^10\./);

    api.create("endpointslices", slice("web", ["10.1.0.1"]));
    await until(() => h.svc("web")?.endpoints.length === 1, "endpoints appear");
    expect(h.svc("web")!.endpoints[0]).toMatchObject({ ip: "10.1.0.1", nodeName: "edge2", ready: true });

    api.update("endpointslices", slice("web", ["10.1.0.1", "10.1.0.2", "10.1.0.3"]));
    await until(() => h.svc("web")?.endpoints.length === 3, "scaled to 3");

    const cur = api.get("services", "demo", "web")!;
    api.update("services", { ...cur, spec: { ...(cur as any).spec, ports: [{ name: "http", port: 8081, targetPort: "http", protocol: "TCP" }] } });
    await until(() => h.svc("web")?.ports[0]?.port === 8081, "port changed");

    api.delete("services", "demo", "web");
    await until(() => !h.svc("web") && h.snaps.length > 0, "service gone");
    // every snapshot is whole: a service never shows up without its endpoints once they exist
    for (const s of h.snaps) for (const x of s.services) if (x.ports[0]?.port === 8081) expect(x.endpoints.length).toBe(3);
  }, 30_000);

  test("an Istio DestinationRule, when that CRD is served, sets the service's policy and follows changes", async () => {
    const api = await fake({ serveDestinationRules: true });
    api.create("services", service("web"));
    const dr = (simple: string) => ({
      apiVersion: "networking.istio.io/v1beta1",
      kind: "DestinationRule",
      metadata: { name: "web", namespace: "demo" },
      spec: { host: "web", trafficPolicy: { loadBalancer: simple === "hash" ? { consistentHash: { useSourceIp: true } } : { simple } } },
    });
    api.create("destinationrules", dr("hash"));
    const h = await start(api);
    await until(() => h.ready(), "first sync");
    // the first snapshot already has the rule's policy
    expect(h.snaps[0]!.services.find((s) => s.name === "web")!.lbPolicy).toBe("ConsistentHash");
    api.update("destinationrules", dr("RANDOM"));
    await until(() => h.svc("web")?.lbPolicy === "Random", "policy follows the rule");
    api.delete("destinationrules", "demo", "web");
    await until(() => h.svc("web")?.lbPolicy === "RoundRobin", "back to the default");
    expect(h.logs.some((l) => l.includes("istio DestinationRules served"))).toBe(true);
  }, 20_000);

  test("without the Istio CRD, no DestinationRule watch is started", async () => {
    const api = await fake();
    const h = await start(api);
    await until(() => h.ready(), "first sync");
    const resources = (h.mod.status!().metadata as { resources: Array<{ resource: string }> }).resources.map((r) => r.resource);
    expect(resources).not.toContain("destinationrules");
    expect(resources).toContain("services");
  }, 20_000);

  test("a compaction while disconnected causes a relist that catches a delete made meanwhile", async () => {
    const api = await fake();
    api.create("services", service("keep"));
    api.create("services", service("gone"));
    const h = await start(api);
    await until(() => h.svc("gone") && h.svc("keep"), "both listed");
    await api.setDown(true);
    api.delete("services", "demo", "gone");
    api.compact();
    await api.setDown(false);
    await until(() => h.svc("keep") && !h.svc("gone"), "delete caught by relist", 15_000);
    expect(h.logs.some((l) => l.includes("resourceVersion expired, listing again") || l.includes("relisted"))).toBe(true);
  }, 30_000);

  test("410 as a plain HTTP status on a new watch → relist", async () => {
    const api = await fake({ staleWatch: "status" });
    api.create("services", service("a"));
    const h = await start(api);
    await until(() => h.svc("a"), "listed");
    await api.setDown(true);
    api.delete("services", "demo", "a");
    api.create("services", service("b"));
    api.compact();
    await api.setDown(false);
    await until(() => h.svc("b") && !h.svc("a"), "relisted after HTTP 410", 15_000);
    expect(api.requests.some((r) => r.query.watch && r.path === "/api/v1/services")).toBe(true);
  }, 30_000);

  test("a watch the server ends cleanly (its timeout) restarts at once, without a warning", async () => {
    const api = await fake();
    const h = await start(api);
    await until(() => h.ready(), "synced");
    await api.waitForWatches("services");
    const restarts = () => (h.mod.status!() as any).metadata.resources.find((r: any) => r.resource === "services").watchRestarts;
    const before = restarts();
    api.breakWatches({ kind: "services", graceful: true });
    api.create("services", service("next"));
    await until(() => h.svc("next") && restarts() > before, "watch restarted");
    expect(h.logs.some((l) => l.includes("apiserver unreachable"))).toBe(false);
  }, 30_000);

  test("410 as an ERROR event on a live watch → relist", async () => {
    const api = await fake();
    api.create("services", service("a"));
    const h = await start(api);
    await until(() => h.svc("a"), "listed");
    const relists = () => (h.mod.status!() as any).metadata.resources.find((r: any) => r.resource === "services").relists;
    const before = relists();
    api.compact({ expireOpenWatches: true });
    api.create("services", service("b"));
    await until(() => h.svc("b") && relists() > before, "relisted after ERROR 410");
  }, 30_000);

  test("apiserver down for 30 s: state kept meanwhile, then reconciled", async () => {
    const api = await fake();
    api.create("services", service("a"));
    api.create("endpointslices", slice("a", ["10.1.0.1"]));
    const h = await start(api);
    await until(() => h.svc("a")?.endpoints.length === 1, "synced");
    await api.setDown(true);
    api.create("services", service("b"));
    api.delete("endpointslices", "demo", "a-abc");
    for (let i = 0; i < 6; i++) {
      await Bun.sleep(5000);
      expect(h.svc("a")?.endpoints.length).toBe(1); // the last known state keeps serving
    }
    const st = (h.mod.status!() as any).metadata.resources.find((r: any) => r.resource === "services");
    expect(st.state).toBe("reconnecting");
    expect(h.logs.some((l) => l.includes("apiserver unreachable, serving cached state"))).toBe(true);
    await api.setDown(false);
    await until(() => h.svc("b") && h.svc("a")?.endpoints.length === 0, "reconciled", 40_000);
  }, 90_000);

  test("a malformed event line or object is logged and skipped; the watch goes on", async () => {
    const api = await fake();
    const h = await start(api);
    await until(() => h.ready(), "synced");
    await api.waitForWatches("services");
    api.injectRawWatchLine("services", '{"type":"ADDED","object":{"metadata":');
    api.injectRawWatchLine("services", '{"type":"ADDED","object":{"kind":"Service","spec":{}}}');
    api.create("services", service("after"));
    await until(() => h.svc("after"), "later event applied");
    expect(h.logs.some((l) => l.includes("skipping malformed watch event"))).toBe(true);
    expect(h.logs.some((l) => l.includes("skipping malformed object in watch event"))).toBe(true);
  }, 30_000);

  test("v1 Endpoints when EndpointSlices are not served (KubeEdge MetaServer, old clusters)", async () => {
    const api = await fake({ serveEndpointSlices: false });
    api.create("services", service("web"));
    api.create("endpoints", {
      apiVersion: "v1",
      kind: "Endpoints",
      metadata: { name: "web", namespace: "demo" },
      subsets: [{ addresses: [{ ip: "10.2.0.1", nodeName: "edge3" }], notReadyAddresses: [{ ip: "10.2.0.9" }], ports: [{ name: "http", port: 8080 }] }],
    });
    const h = await start(api);
    await until(() => h.svc("web")?.endpoints.length === 1, "endpoints from v1 Endpoints");
    expect(h.svc("web")!.endpoints[0]).toMatchObject({ ip: "10.2.0.1", nodeName: "edge3" });
    expect((h.mod.status!() as any).metadata.endpointsApi).toBe("v1 Endpoints");
  }, 30_000);

  test("big lists are paginated", async () => {
    const api = await fake();
    for (let i = 0; i < 1200; i++) api.create("services", service(`s${i}`));
    const h = await start(api);
    await until(() => h.snaps.at(-1)?.services.length === 1200, "all 1200 services", 15_000);
    const lists = api.requests.filter((r) => r.path === "/api/v1/services" && !r.query.watch);
    expect(lists.length).toBeGreaterThanOrEqual(3);
    expect(lists.some((r) => r.query.continue)).toBe(true);
    expect(lists.every((r) => r.headers.accept === "application/json")).toBe(true);
    // the watch starts after the list's snapshot is published: wait for its request
    const isWatch = (r: (typeof api.requests)[number]) => r.path === "/api/v1/services" && !!r.query.watch;
    await until(() => api.requests.some(isWatch), "the services watch");
    const watch = api.requests.find(isWatch);
    expect(watch?.query).toMatchObject({ allowWatchBookmarks: "true" });
    expect(Number(watch?.query.timeoutSeconds)).toBeGreaterThan(0);
  }, 30_000);
});

test("edgemesh status shows the metadata source and each resource's sync state", async () => {
  const { renderStatus } = await import("../../src/cli/status.ts");
  const { emptyStatus } = await import("../../src/admin/status.ts");
  const api = await fake();
  const h = await start(api);
  await until(() => h.ready(), "synced");
  const doc = { ...emptyStatus("agent", "edge1", "test"), ...h.mod.status!() };
  const text = renderStatus(doc as never);
  expect(text).toContain(`METADATA  source=kubernetes server=${api.url} endpoints=discovery.k8s.io/v1 EndpointSlices`);
  expect(text).toMatch(/^services\s+synced\s+\S+\s+0\s+0\s+\d+$/m);
}, 30_000);

describe("objects from the metadata source are validated one by one", () => {
  test("crafted objects are rejected alone, named with their field, counted and listed; a fixed one comes back", async () => {
    const api = await fake();
    api.create("services", { ...service("web"), spec: { clusterIP: "10.96.0.20", ports: [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }] } });
    api.create("endpointslices", slice("web", ["10.1.0.1"]));
    const bad = (name: string, spec: Record<string, unknown>) => ({ ...service(name), spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }], ...spec } });
    api.create("services", bad("newline", { clusterIP: "10.96.0.21\nroute add 10.0.0.0/8 dev lo", clusterIPs: ["10.96.0.21\nroute add 10.0.0.0/8 dev lo"] }));
    api.create("services", bad("loopback", { clusterIP: "127.0.0.1", clusterIPs: ["127.0.0.1"] }));
    api.create("services", bad("port", { clusterIP: "10.96.0.23", ports: [{ name: "http", port: 70000, protocol: "TCP" }] }));
    api.create("services", bad("quote", { clusterIP: "10.96.0.24", ports: [{ name: 'x" -j ACCEPT', port: 80, protocol: "TCP" }] }));
    api.create("services", bad("many", { clusterIP: "10.96.0.25", ports: Array.from({ length: 300 }, (_, i) => ({ name: `p${i}`, port: 1000 + i, protocol: "TCP" })) }));
    api.create("endpointslices", slice("metadata", ["169.254.169.254"]));
    const h = await start(api);
    await until(() => h.ready(), "first sync");
    const names = () => h.snaps.at(-1)!.services.map((s) => s.name);
    expect(names()).toEqual(["web"]);
    expect(h.svc("web")!.endpoints.map((e) => e.ip)).toEqual(["10.1.0.1"]);

    const st = h.mod.status!() as { metadata: { resources: Array<{ resource: string; rejectedNow: number; rejected: Array<{ object: string; reason: string }> }> } };
    const of = (r: string) => st.metadata.resources.find((x) => x.resource === r)!;
    expect(of("services").rejectedNow).toBe(5);
    const reason = (o: string) => of("services").rejected.find((x) => x.object === o)?.reason;
    expect(reason("demo/newline")).toMatch(/^spec\.clusterIP: expected an IPv4 or IPv6 address/);
    expect(reason("demo/loopback")).toBe("spec.clusterIP: loopback address not allowed");
    expect(reason("demo/port")).toMatch(/^spec\.ports\[0\]\.port: /);
    expect(reason("demo/quote")).toMatch(/^spec\.ports\[0\]\.name: expected a DNS-1123 label/);
    expect(reason("demo/many")).toMatch(/^spec\.ports: /);
    expect(of("endpointslices").rejected).toEqual([{ object: "demo/metadata-abc", reason: "endpoints[0].addresses[0]: link-local address not allowed" }]);
    const warned = () => h.logs.filter((l) => l.includes("rejected object from the metadata source"));
    expect(warned()).toHaveLength(6);
    expect(warned().every((l) => !l.slice(0, -1).includes("\n"))).toBe(true);

    // the same bad object again: no new log line; fixed: it serves
    api.patch("services", "demo", "loopback", { metadata: { labels: { touched: "1" } } });
    api.patch("services", "demo", "port", { spec: { ports: [{ name: "http", port: 8081, protocol: "TCP" }] } });
    await until(() => h.svc("port"), "the fixed service is published");
    expect(names()).toEqual(["port", "web"]);
    expect(warned()).toHaveLength(6);
    // a good object turned bad leaves the snapshot (no stale copy serves on)
    api.patch("services", "demo", "web", { spec: { sessionAffinity: "Sometimes" } });
    await until(() => !h.svc("web"), "the broken service is withdrawn");
    expect(warned()).toHaveLength(7);
  }, 30_000);
});

describe("what the metadata source sends is read within bounds", () => {
  test("a LIST page past maxListPageMiB is asked for again in smaller pages; a watch event past maxEventKiB restarts the watch; the last state keeps serving", async () => {
    const api = await fake();
    const big = "x".repeat(40 * 1024);
    for (let i = 0; i < 60; i++) api.create("services", { ...service(`s${i}`), metadata: { name: `s${i}`, namespace: "demo", annotations: { note: big } } });
    const h = await start(api, { server: api.url, maxListPageMiB: 1, maxEventKiB: 64 });
    await until(() => h.ready(), "first sync", 10_000);
    expect(h.snaps.at(-1)!.services).toHaveLength(60);
    expect(h.logs.some((l) => l.includes("list page too large, asking for fewer objects per page"))).toBe(true);
    const services = () => (h.mod.status!() as { metadata: { resources: Array<{ resource: string; oversized: number }> } }).metadata.resources.find((r) => r.resource === "services")!;
    const before = services().oversized;
    expect(before).toBeGreaterThan(0);

    await api.waitForWatches("services");
    // a 100 KiB event: never buffered past 64 KiB, the watch starts again from the last resourceVersion
    api.injectRawWatchLine("services", JSON.stringify({ type: "MODIFIED", object: { metadata: { name: "s0", namespace: "demo" }, pad: "y".repeat(100 * 1024) } }) + "\n");
    await until(() => services().oversized > before, "the oversized event is counted");
    expect(h.snaps.at(-1)!.services).toHaveLength(60);
    api.create("services", service("after"));
    await until(() => h.svc("after"), "a later change still arrives", 15_000);
  }, 40_000);
});
