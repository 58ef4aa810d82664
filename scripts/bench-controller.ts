// Controller benchmark: 5,000 services × 3 endpoints served by the fake
// apiserver (in its own process), the controller in this one. Measures the
// time from start to the first complete snapshot, memory, and the time from
// one change on the server to the snapshot that shows it (p50/p99 over 200).
// Usage: bun scripts/bench-controller.ts [services=5000] [changes=200]
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { controllerModule } from "../src/agent/controller/index.ts";
import { Bus } from "../src/agent/bus.ts";
import { Metrics } from "../src/admin/metrics.ts";
import { buildConfig } from "../src/config/load.ts";
import { tempDir } from "../test/util/temp.ts";
import { createLogger } from "../src/log.ts";
import type { ServiceSnapshot } from "../src/model/index.ts";

const N = Number(process.argv[2] ?? 5000);
const CHANGES = Number(process.argv[3] ?? 200);
const say = (s: string) => process.stderr.write(`bench: ${s}\n`);

const serverCode = `
import { FakeApiServer } from ${JSON.stringify(join(import.meta.dir, "../test/kube/fake-apiserver/index.ts"))};
const api = await FakeApiServer.start({ historyLimit: 100000 });
const n = ${N};
for (let i = 0; i < n; i++) {
  api.create("services", { metadata: { name: "svc-" + i, namespace: "ns-" + (i % 50) }, spec: { ports: [{ name: "http", port: 80, targetPort: 8080 }] } });
  api.create("endpointslices", { metadata: { name: "svc-" + i + "-x", namespace: "ns-" + (i % 50), labels: { "kubernetes.io/service-name": "svc-" + i } },
    addressType: "IPv4", ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    endpoints: [0, 1, 2].map((k) => ({ addresses: ["10." + (i >> 8 & 255) + "." + (i & 255) + "." + (k + 1)], conditions: { ready: true }, nodeName: "edge" + k })) });
}
console.log("ready " + api.url);
await new Promise(() => {});
`;
const child = Bun.spawn([process.execPath, "-e", serverCode], { stdout: "pipe", stderr: "inherit" });
const reader = child.stdout.getReader();
let out = "";
while (!out.includes("\n")) {
  const { value, done } = await reader.read();
  if (done) throw new Error("fake apiserver exited");
  out += new TextDecoder().decode(value);
}
const url = out.trim().split(" ")[1]!;
say(`fake apiserver with ${N} services × 3 endpoints at ${url}`);

try {
  const dir = tempDir("bench-controller");
  writeFileSync(join(dir, "psk"), "bench-controller-secret-0123456789");
  const config = buildConfig({ psk: "psk", nodeName: "edge0", agent: { metadata: { kubernetes: { server: url } } } }, dir, "", { role: "agent" });
  const log = createLogger("controller", "warn");
  const bus = new Bus(log);
  let latest: ServiceSnapshot | undefined;
  const waiters: Array<(s: ServiceSnapshot) => boolean> = [];
  bus.subscribe("services", (s) => {
    latest = s;
    for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]!(s)) waiters.splice(i, 1);
  });
  const rss0 = process.memoryUsage.rss();
  const t0 = performance.now();
  const mod = controllerModule.create({ config, bus, log, metrics: new Metrics(), setReady: () => {} });
  await mod.start();
  await new Promise<void>((resolve) => waiters.push((s) => (s.services.length === N ? (resolve(), true) : false)));
  const first = performance.now() - t0;
  Bun.gc(true);
  const rss1 = process.memoryUsage.rss();
  say(`first complete snapshot: ${first.toFixed(0)} ms`);

  const lat: number[] = [];
  for (let c = 0; c < CHANGES; c++) {
    const i = (c * 37) % N;
    const ns = `ns-${i % 50}`;
    const ip = `10.200.${c >> 8}.${c & 255}`;
    const body = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `svc-${i}-x`, namespace: ns, labels: { "kubernetes.io/service-name": `svc-${i}` } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      endpoints: [{ addresses: [ip], conditions: { ready: true }, nodeName: "edge9" }],
    };
    const seen = new Promise<void>((resolve) =>
      waiters.push((s) => {
        const svc = s.services.find((x) => x.name === `svc-${i}` && x.namespace === ns);
        if (svc?.endpoints[0]?.ip === ip) {
          resolve();
          return true;
        }
        return false;
      }),
    );
    const ts = performance.now();
    const res = await fetch(`${url}/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices/svc-${i}-x`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`PUT: HTTP ${res.status} ${await res.text()}`);
    await seen;
    lat.push(performance.now() - ts);
  }
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  await mod.stop();
  console.log(
    [
      `services: ${N} × 3 endpoints (EndpointSlices), fake apiserver in its own process, loopback`,
      `first complete snapshot: ${first.toFixed(0)} ms (target ≤ 2000)`,
      `memory: RSS ${(rss0 / 2 ** 20).toFixed(0)} → ${(rss1 / 2 ** 20).toFixed(0)} MiB after the first snapshot (+${((rss1 - rss0) / 2 ** 20).toFixed(0)} MiB)`,
      `change on the server → snapshot (${CHANGES} changes, one at a time, PUT to publish): p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, max ${lat.at(-1)!.toFixed(1)} ms (target p99 ≤ 100)`,
      `snapshots published: generation ${latest?.generation}`,
    ].join("\n"),
  );
} finally {
  child.kill();
}
