// One suite for both metadata sources: the same services, described in the
// config file or served by an apiserver, must give the same snapshot.
import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FakeApiServer } from "./fake-apiserver/index.ts";
import { controllerModule } from "../../src/agent/controller/index.ts";
import { Bus } from "../../src/agent/bus.ts";
import { Metrics } from "../../src/admin/metrics.ts";
import { buildConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/log.ts";
import type { NodeSnapshot, ServiceSnapshot } from "../../src/model/index.ts";
import { waitFor } from "../lab/wait.ts";
import { tempDir } from "../util/temp.ts";

const dir = tempDir("edgemesh-sources");
writeFileSync(join(dir, "psk"), "sources-test-secret-0123456789abcdef");

// the services every source must describe identically
const STATIC = {
  nodes: [{ name: "edge2", addresses: ["10.10.2.12"] }],
  services: [
    {
      name: "web",
      namespace: "demo",
      clusterIP: "10.96.0.10",
      ports: [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }],
      endpoints: [
        { ip: "10.1.0.1", nodeName: "edge2", hostname: "web-0", ports: [{ name: "http", port: 8080, protocol: "TCP" }] },
        { ip: "10.1.0.2", nodeName: "edge3", hostname: "", ports: [{ name: "http", port: 8080, protocol: "TCP" }] },
      ],
      sessionAffinity: "ClientIP",
      sessionAffinityTimeoutSeconds: 600,
      lbPolicy: "ConsistentHash",
    },
    { name: "db", namespace: "demo", clusterIP: "None", ports: [{ name: "pg", port: 5432, targetPort: 5432, protocol: "TCP" }], endpoints: [{ ip: "10.1.0.9", nodeName: "edge2", ports: [] }] },
    { name: "ext", namespace: "demo", clusterIP: "None", type: "ExternalName", externalName: "db.example.com" },
    { name: "dns", namespace: "kube-system", clusterIP: "10.96.0.53", ports: [{ name: "dns", port: 53, targetPort: 53, protocol: "UDP" }], endpoints: [] },
  ],
};

async function seed(api: FakeApiServer): Promise<void> {
  api.create("nodes", { metadata: { name: "edge2" }, status: { addresses: [{ type: "InternalIP", address: "10.10.2.12" }] } });
  api.create("services", {
    metadata: { name: "web", namespace: "demo", annotations: { "edgemesh.io/lb-policy": "ConsistentHash" } },
    spec: { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }], sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } },
  });
  api.create("endpointslices", {
    metadata: { name: "web-1", namespace: "demo", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    endpoints: [
      { addresses: ["10.1.0.1"], conditions: { ready: true }, nodeName: "edge2", hostname: "web-0" },
      { addresses: ["10.1.0.2"], conditions: { ready: true }, nodeName: "edge3" },
      { addresses: ["10.1.0.3"], conditions: { ready: false }, nodeName: "edge3" },
    ],
  });
  api.create("services", { metadata: { name: "db", namespace: "demo" }, spec: { clusterIP: "None", ports: [{ name: "pg", port: 5432, targetPort: 5432 }] } });
  api.create("endpointslices", {
    metadata: { name: "db-1", namespace: "demo", labels: { "kubernetes.io/service-name": "db" } },
    addressType: "IPv4",
    ports: [],
    endpoints: [{ addresses: ["10.1.0.9"], nodeName: "edge2" }],
  });
  api.create("services", { metadata: { name: "ext", namespace: "demo" }, spec: { type: "ExternalName", externalName: "db.example.com" } });
  api.create("services", { metadata: { name: "dns", namespace: "kube-system" }, spec: { clusterIP: "10.96.0.53", ports: [{ name: "dns", port: 53, targetPort: 53, protocol: "UDP" }] } });
}

const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const s of stops) await s();
});

async function snapshotOf(metadata: Record<string, unknown>): Promise<{ services: ServiceSnapshot; nodes: NodeSnapshot }> {
  const config = buildConfig({ psk: "psk", nodeName: "edge1", agent: { metadata } }, dir, "", { role: "agent" });
  const log = createLogger("controller", "error");
  const bus = new Bus(log);
  let ready = false;
  const mod = controllerModule.create({ config, bus, log, metrics: new Metrics(), setReady: (r) => (ready = r) });
  await mod.start();
  stops.push(() => mod.stop());
  await waitFor(() => ready && bus.latest("services") && bus.latest("nodes")?.nodes.length, { timeoutMs: 5000, description: "first snapshot" });
  await Bun.sleep(100); // let a debounced follow-up land, if any
  return { services: bus.latest("services")!, nodes: bus.latest("nodes")! };
}

describe("metadata sources give the same snapshot", () => {
  test("kubernetes (EndpointSlices), kubernetes (v1 Endpoints) and static agree", async () => {
    const fromStatic = await snapshotOf({ source: "static", static: STATIC });

    const api = await FakeApiServer.start();
    stops.push(() => api.stop());
    await seed(api);
    const fromKube = await snapshotOf({ source: "kubernetes", kubernetes: { server: api.url } });
    expect(fromKube.services.services).toEqual(fromStatic.services.services);
    expect(fromKube.nodes.nodes).toEqual(fromStatic.nodes.nodes);

    const old = await FakeApiServer.start({ serveEndpointSlices: false });
    stops.push(() => old.stop());
    await seed(old); // the fake mirrors slices into v1 Endpoints? if not, write them
    if (old.list("endpoints").length === 0) {
      old.create("endpoints", {
        metadata: { name: "web", namespace: "demo" },
        subsets: [{ addresses: [{ ip: "10.1.0.1", nodeName: "edge2", hostname: "web-0" }, { ip: "10.1.0.2", nodeName: "edge3" }], notReadyAddresses: [{ ip: "10.1.0.3" }], ports: [{ name: "http", port: 8080, protocol: "TCP" }] }],
      });
      old.create("endpoints", { metadata: { name: "db", namespace: "demo" }, subsets: [{ addresses: [{ ip: "10.1.0.9", nodeName: "edge2" }] }] });
    }
    const fromEndpoints = await snapshotOf({ source: "kubernetes", kubernetes: { server: old.url } });
    expect(fromEndpoints.services.services).toEqual(fromStatic.services.services);
  }, 30_000);
});
