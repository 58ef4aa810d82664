// Finding 1 of the hardening review, on the compiled agent with real
// iptables and ip: an impersonated metadata source serves Services whose
// fields carry `ip -batch` and iptables-restore syntax. Nothing of it runs,
// the crafted objects are rejected alone (status, metrics), and the good
// service next to them is intercepted and answers.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { ensureBinary, tempConfigDir } from "./util/run.ts";

let lab: Lab | undefined;
beforeAll(async () => {
  lab = await Lab.create({ name: "hostilemd" });
});
afterAll(async () => {
  await lab?.destroy();
});

const FIXTURES = join(import.meta.dir, "fixtures");
const svc = (name: string, spec: Record<string, unknown>) => ({ kind: "services", object: { metadata: { name, namespace: "demo" }, spec: { ports: [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP" }], ...spec } } });

test("crafted Service fields run nothing as root; the good service keeps working", async () => {
  const l = lab!;
  const binary = await ensureBinary();
  const t = tempConfigDir();
  const objects = [
    svc("web", { clusterIP: "10.96.0.20" }),
    {
      kind: "endpointslices",
      object: {
        metadata: { name: "web-1", namespace: "demo", labels: { "kubernetes.io/service-name": "web" } },
        addressType: "IPv4",
        endpoints: [{ addresses: [l.hosts.edge1.ip], nodeName: "edge1" }],
        ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      },
    },
    svc("pwn-route", { clusterIP: "10.96.0.21\nroute add 10.200.0.0/16 dev lo", clusterIPs: ["10.96.0.21\nroute add 10.200.0.0/16 dev lo"] }),
    svc("pwn-link", { clusterIP: "10.96.0.22\nlink add pwned0 type dummy", clusterIPs: ["10.96.0.22\nlink add pwned0 type dummy"] }),
    svc("pwn-rules", { clusterIP: "10.96.0.23", ports: [{ name: 'x"\nCOMMIT\n*filter\n-I INPUT -j DROP\nCOMMIT\n#', port: 80, protocol: "TCP" }] }),
    svc("pwn-local", { clusterIP: "127.0.0.1" }),
  ];
  const objFile = join(t.dir, "objects.json");
  writeFileSync(objFile, JSON.stringify(objects));
  const api = l.spawn("edge1", [BUN, join(FIXTURES, "fake-apiserver-main.ts"), "127.0.0.1", "16443", objFile]);
  await api.waitForOutput(/listening/, { timeoutMs: 15_000 });
  const backend = l.spawn("edge1", [BUN, join(FIXTURES, "http-id.ts"), "0.0.0.0", "8080", "web-backend"]);
  await backend.waitForOutput(/listening/, { timeoutMs: 15_000 });
  const cfg = t.write(
    "agent.yaml",
    `nodeName: edge1\n${t.trust("edge1")}\npsk: psk\nadminListen: 127.0.0.1:10556\nagent:\n  metadata: {source: kubernetes, kubernetes: {server: "http://127.0.0.1:16443"}}\n  tunnel: {listenPort: 20006}\n  dns: {enable: false}\n`,
  );
  const agent = l.spawn("edge1", [binary, "agent", "--config", cfg]);
  const body = await waitFor(
    async () => {
      const r = await l.httpGet("edge1", "http://10.96.0.20/", { timeoutMs: 2000 });
      return r.status === 200 ? r.body : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 200, description: "the good service answers at its ClusterIP" },
  );
  expect(body.trim()).toBe("web-backend");
  expect(agent.running).toBe(true);

  expect((await l.exec("edge1", ["ip", "link", "show", "pwned0"])).code).not.toBe(0);
  expect((await l.exec("edge1", ["ip", "route", "show", "10.200.0.0/16"])).stdout.trim()).toBe("");
  expect((await l.exec("edge1", ["ip", "route", "show", "table", "all", "dev", "lo"])).stdout).not.toContain("10.200.");
  const filter = (await l.exec("edge1", ["iptables", "-S", "INPUT"])).stdout;
  expect(filter).not.toContain("DROP");
  const nat = (await l.exec("edge1", ["iptables", "-t", "nat", "-S", "EDGEMESH-SERVICES"])).stdout;
  expect(nat).toContain("-d 10.96.0.20/32");
  expect(nat).not.toMatch(/10\.96\.0\.2[1-3]|127\.0\.0\.1/);

  const status = await l.fetchStatus<{ metadata: { resources: Array<{ resource: string; rejectedNow: number; rejected: Array<{ object: string; reason: string }> }> } }>("edge1", "127.0.0.1:10556");
  const services = status.metadata.resources.find((r) => r.resource === "services")!;
  expect(services.rejected.map((r) => r.object).sort()).toEqual(["demo/pwn-link", "demo/pwn-local", "demo/pwn-route", "demo/pwn-rules"]);
  expect(services.rejected.find((r) => r.object === "demo/pwn-local")?.reason).toBe("spec.clusterIP: loopback address not allowed");
  const metrics = await l.httpGet("edge1", "http://127.0.0.1:10556/metrics");
  expect(metrics.body).toMatch(/^edgemesh_controller_rejected_objects\{resource="services"\} 4$/m);
  const shown = await l.exec("edge1", [binary, "status", "--admin", "127.0.0.1:10556"]);
  expect(shown.stdout).toContain("REJECTED OBJECTS");
  expect(shown.stdout).toContain('"demo/pwn-route"');
  const logs = agent.output("stderr");
  expect(logs.match(/rejected object from the metadata source/g)?.length).toBe(4);
}, 60_000);
