// The application path end to end in the NAT lab: an app on edge1 connects
// to a ClusterIP; iptables (real, in edge1's namespace) sends it to the
// agent's listener; the agent picks a backend and reaches it directly (same
// node), over the LAN (edge3) or through the relay (edge2).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { startMesh, type Mesh } from "./lab/mesh.ts";
import { ensureBinary, ROOT } from "./util/run.ts";

const FIX = join(ROOT, "test/fixtures");
let lab: Lab;
let mesh: Mesh;

const svc = (name: string, ip: string, eps: Array<[string, string, number?]>, extra = "", port = 80, target = 8080) =>
  `- {name: ${name}, namespace: demo, clusterIP: ${ip}, ports: [{name: http, port: ${port}, targetPort: ${target}}], endpoints: [${eps
    .map(([epIp, node]) => `{ip: ${epIp}, nodeName: ${node}}`)
    .join(", ")}]${extra}}`;

async function count(url: string, n: number | string, local?: string): Promise<{ ok: boolean; counts: Record<string, number>; errors: number; errorSamples: string[]; ms: number }> {
  const r = await lab.exec("edge1", [BUN, join(FIX, "http-count.ts"), url, String(n), ...(local ? [local] : [])], { timeoutMs: 120_000 });
  return JSON.parse(r.stdout.trim().split("\n").pop() || "{}");
}

beforeAll(async () => {
  const binary = await ensureBinary();
  lab = await Lab.create({ name: "mesh" });
  // port-randomising NATs: edge1 ↔ edge2 stays relayed, which is the path under test here
  await lab.setNatMapping("nat1", "random");
  await lab.setNatMapping("nat2", "random");
  const h = lab.hosts;
  // second addresses so one node can hold two backends
  await lab.execOrThrow("edge3", ["ip", "addr", "add", "10.10.1.23/24", "dev", "eth0"]);
  await lab.execOrThrow("edge2", ["ip", "addr", "add", "10.10.2.22/24", "dev", "eth0"]);
  await lab.execOrThrow("edge1", ["ip", "addr", "add", "10.10.1.21/24", "dev", "eth0"]);
  const backends: Array<[string, string, number, string]> = [
    ["edge1", h.edge1.ip, 8080, "b-edge1"],
    ["edge3", h.edge3.ip, 8080, "b-edge3"],
    ["edge3", h.edge3.ip, 8081, "b-edge3-alt"],
    ["edge3", "10.10.1.23", 8080, "b-edge3b"],
    ["edge2", h.edge2.ip, 8080, "b-edge2"],
    ["edge2", "10.10.2.22", 8080, "b-edge2b"],
  ];
  for (const [host, ip, port, id] of backends) lab.spawn(host, [BUN, join(FIX, "http-id.ts"), ip, String(port), id]);
  lab.spawn("edge2", [BUN, join(FIX, "udp-echo.ts"), "0.0.0.0", "9002"]);
  lab.spawn("edge3", [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9007", "echo"]);
  const four: Array<[string, string]> = [
    [h.edge3.ip, "edge3"],
    ["10.10.1.23", "edge3"],
    [h.edge2.ip, "edge2"],
    ["10.10.2.22", "edge2"],
  ];
  mesh = startMesh(lab, {
    binary,
    proxy: true,
    agents: [
      { name: "edge1", host: "edge1", hints: { edge3: [h.edge3.ip], edge2: [h.edge2.ip] } },
      { name: "edge3", host: "edge3", hints: { edge1: [h.edge1.ip] } },
      { name: "edge2", host: "edge2", hints: { edge1: [h.edge1.ip] } },
    ],
    services: [
      svc("local", "10.96.0.11", [[h.edge1.ip, "edge1"]]),
      svc("lan", "10.96.0.13", [[h.edge3.ip, "edge3"]]),
      svc("far", "10.96.0.12", [[h.edge2.ip, "edge2"]]),
      `- {name: multi, namespace: demo, clusterIP: 10.96.0.20, ports: [{name: a, port: 80, targetPort: 8080}, {name: b, port: 81, targetPort: 8081}], endpoints: [{ip: ${h.edge3.ip}, nodeName: edge3}]}`,
      `- {name: udp, namespace: demo, clusterIP: 10.96.0.30, ports: [{name: dns, port: 53, targetPort: 9002, protocol: UDP}], endpoints: [{ip: ${h.edge2.ip}, nodeName: edge2}]}`,
      svc("spread", "10.96.0.40", four),
      svc("random", "10.96.0.41", four, ", lbPolicy: Random"),
      svc("hash", "10.96.0.42", four, ", lbPolicy: ConsistentHash"),
      svc("sticky", "10.96.0.43", four, ", sessionAffinity: ClientIP, sessionAffinityTimeoutSeconds: 60"),
      svc("empty", "10.96.0.50", []),
      svc("half-dead", "10.96.0.51", [[h.edge3.ip, "edge3"], ["10.10.1.99", "edge3"]]),
      svc("many", "10.96.0.60", [[h.edge3.ip, "edge3"]], "", 7, 9007),
      svc("scale", "10.96.0.70", [[h.edge3.ip, "edge3"]]),
      svc("ports", "10.96.0.71", [[h.edge3.ip, "edge3"]]),
    ],
  });
  await mesh.startAll();
  // rules are in once the listeners table is applied
  await waitFor(async () => ((await mesh.status<{ proxier?: { rules: number } }>("edge1")).proxier?.rules ?? 0) > 0, { timeoutMs: 15_000, description: "rules programmed" });
}, 90_000);

afterAll(async () => {
  mesh?.dumpLogsIfAsked();
  await lab?.destroy();
}, 30_000);

describe("ClusterIP traffic through the mesh", () => {
  test("HTTP to a ClusterIP whose backend is on this node, on the LAN (direct) and behind the other NAT (relayed)", async () => {
    for (const [ip, id] of [
      ["10.96.0.11", "b-edge1"],
      ["10.96.0.13", "b-edge3"],
      ["10.96.0.12", "b-edge2"],
    ]) {
      const r = await lab.exec("edge1", ["curl", "-sS", "-m", "10", `http://${ip}/`]);
      expect(`${ip} ${r.stdout.trim()}`).toBe(`${ip} ${id}`);
    }
    const peers = (await mesh.status<{ peers: Array<{ nodeName: string; path: string }> }>("edge1")).peers;
    expect(peers.find((p) => p.nodeName === "edge3")?.path).toBe("direct");
    expect(peers.find((p) => p.nodeName === "edge2")?.path).toBe("relayed");
    // the far agents took those streams straight off the connection, direct and relayed alike
    for (const far of ["edge3", "edge2"]) {
      const streams = (await mesh.status<{ proxyStreams: { in: number; acceptedDirect: number } }>(far)).proxyStreams;
      expect(streams.acceptedDirect).toBeGreaterThanOrEqual(1);
    }
  }, 60_000);

  test("a multi-port service reaches each target port", async () => {
    expect((await lab.exec("edge1", ["curl", "-sS", "-m", "10", "http://10.96.0.20:80/"])).stdout.trim()).toBe("b-edge3");
    expect((await lab.exec("edge1", ["curl", "-sS", "-m", "10", "http://10.96.0.20:81/"])).stdout.trim()).toBe("b-edge3-alt");
  }, 30_000);

  test("UDP echo to a ClusterIP across the relay", async () => {
    const r = await lab.exec("edge1", ["bash", "-c", "for i in 1 2 3; do echo ping-$i | nc -u -w1 10.96.0.30 53; done"], { timeoutMs: 20_000 });
    expect(r.stdout).toContain("ping-1");
    expect(r.stdout).toContain("ping-3");
  }, 30_000);

  test("round robin over 4 backends on 2 nodes is fair (each 25% ± 5% of 2,000)", async () => {
    const r = await count("http://10.96.0.40/", 2000);
    expect(r.errors).toBe(0);
    const ids = Object.keys(r.counts).sort();
    expect(ids).toEqual(["b-edge2", "b-edge2b", "b-edge3", "b-edge3b"]);
    for (const id of ids) expect(Math.abs(r.counts[id]! / 2000 - 0.25)).toBeLessThanOrEqual(0.05);
  }, 120_000);

  test("Random is roughly uniform; ConsistentHash and ClientIP affinity keep one client on one backend", async () => {
    const rnd = await count("http://10.96.0.41/", 400);
    expect(Object.keys(rnd.counts).length).toBe(4);
    for (const v of Object.values(rnd.counts)) expect(v).toBeGreaterThan(50);
    for (const url of ["http://10.96.0.42/", "http://10.96.0.43/"]) {
      const a = await count(url, 50, lab.hosts.edge1.ip);
      const b = await count(url, 50, "10.10.1.21");
      expect(Object.keys(a.counts).length).toBe(1);
      expect(Object.keys(b.counts).length).toBe(1);
    }
  }, 120_000);

  test("no endpoints → the connection is refused in under 100 ms", async () => {
    const r = await lab.exec("edge1", ["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{time_total}", "http://10.96.0.50/"]);
    expect(r.code).not.toBe(0);
    const secs = Number(r.stdout.trim() || "9");
    expect(secs).toBeLessThan(0.1);
    // the operator is told once, not once per refused client
    await lab.exec("edge1", ["curl", "-sS", "-m", "5", "http://10.96.0.50/"]);
    await waitFor(() => mesh.logs("edge1").includes("service has no ready endpoints"), { timeoutMs: 2000, description: "no-endpoints warning" });
    const lines = mesh.logs("edge1").split("\n").filter((l) => l.includes("service has no ready endpoints"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("service=demo/empty address=10.96.0.50:80");
  }, 30_000);

  test("a dead backend is skipped: requests go to the live one without errors, and it is left out for a while", async () => {
    const r = await count("http://10.96.0.51/", 20);
    expect(r.errors).toBe(0);
    expect(r.counts).toEqual({ "b-edge3": 20 });
    // one failed dial puts the dead endpoint aside: 20 requests do not wait 10 times for it
    expect(r.ms).toBeLessThan(15_000);
  }, 120_000);

  test("SOCKS5 reaches a service by name", async () => {
    const r = await lab.exec("edge1", ["curl", "-sS", "-m", "10", "--socks5-hostname", "127.0.0.1:10800", "http://far.demo:80/"]);
    expect(r.stdout.trim()).toBe("b-edge2");
  }, 30_000);

  /** replaces one service's line in edge1's config; the agent reloads the file on change */
  function editService(name: string, line: string): void {
    const path = mesh.agents.get("edge1")!.config;
    const lines = readFileSync(path, "utf8").split("\n");
    const i = lines.findIndex((l) => l.includes(`- {name: ${name}, `));
    if (i < 0) throw new Error(`no service ${name} in ${path}`);
    lines[i] = lines[i]!.replace(/- \{.*$/, line);
    writeFileSync(path, lines.join("\n"));
  }
  const listener = async (name: string) =>
    (await mesh.status<{ listeners?: Array<{ service: string; port: number; endpoints: Record<string, string[]> | unknown }> }>("edge1")).listeners?.filter((l) => l.service === `demo/${name}`) ?? [];

  test("scaling a service up and down while traffic runs: no client error, new backends used", async () => {
    const h = lab.hosts;
    const run = count("http://10.96.0.70/", "8s");
    await Bun.sleep(1500);
    editService("scale", svc("scale", "10.96.0.70", [[h.edge3.ip, "edge3"], ["10.10.1.23", "edge3"], [h.edge2.ip, "edge2"], ["10.10.2.22", "edge2"]]));
    await Bun.sleep(3000);
    editService("scale", svc("scale", "10.96.0.70", [["10.10.2.22", "edge2"]]));
    const r = await run;
    expect(r.errorSamples).toEqual([]);
    expect(r.errors).toBe(0);
    // before: edge3 only; during: all four; after: edge2b only
    expect(Object.keys(r.counts).sort()).toEqual(["b-edge2", "b-edge2b", "b-edge3", "b-edge3b"]);
    const after = await count("http://10.96.0.70/", 20);
    expect(after.counts).toEqual({ "b-edge2b": 20 });
  }, 60_000);

  test("a port added is served, a port removed stops being served (kube-proxy 'updated after adding or deleting ports')", async () => {
    const h = lab.hosts;
    const curl = async (url: string) => (await lab.exec("edge1", ["curl", "-sS", "-m", "2", url])).stdout.trim();
    expect(await curl("http://10.96.0.71:80/")).toBe("b-edge3");
    editService("ports", `- {name: ports, namespace: demo, clusterIP: 10.96.0.71, ports: [{name: a, port: 80, targetPort: 8080}, {name: b, port: 81, targetPort: 8081}], endpoints: [{ip: ${h.edge3.ip}, nodeName: edge3}]}`);
    await waitFor(async () => (await curl("http://10.96.0.71:81/")) === "b-edge3-alt", { timeoutMs: 5000, intervalMs: 100, description: "port 81 served" });
    expect(await curl("http://10.96.0.71:80/")).toBe("b-edge3");
    editService("ports", `- {name: ports, namespace: demo, clusterIP: 10.96.0.71, ports: [{name: b, port: 81, targetPort: 8081}], endpoints: [{ip: ${h.edge3.ip}, nodeName: edge3}]}`);
    await waitFor(async () => (await listener("ports")).length === 1, { timeoutMs: 5000, intervalMs: 100, description: "port 80's listener gone" });
    const gone = await lab.exec("edge1", ["curl", "-sS", "-m", "2", "http://10.96.0.71:80/"]);
    expect(gone.code).not.toBe(0);
    expect(await curl("http://10.96.0.71:81/")).toBe("b-edge3-alt");
  }, 60_000);

  test("10,000 concurrent connections through one tunnel are all served", async () => {
    const r = await lab.exec("edge1", [BUN, join(FIX, "many-conns.ts"), "10.96.0.60", "7", "10000", "150000"], { timeoutMs: 170_000 });
    const res = JSON.parse(r.stdout.trim().split("\n").pop() || "{}") as { opened: number; served: number; failed: number; errors: Record<string, number>; connectMs: number; ms: number };
    console.error(`10,000 connections: opened in ${res.connectMs} ms, all answered in ${res.ms} ms`);
    expect(res.errors).toEqual({});
    expect(res.opened).toBe(10_000);
    expect(res.served).toBe(10_000);
    const peers = (await mesh.status<{ peers: Array<{ nodeName: string; path: string }> }>("edge1")).peers;
    expect(peers.find((p) => p.nodeName === "edge3")?.path).toBe("direct");
  }, 180_000);

  test("SIGTERM leaves no EDGEMESH chain or route; kill -9 and restart replaces stale rules and traffic works", async () => {
    const edge1 = mesh.agents.get("edge1")!;
    edge1.proc.kill("SIGKILL");
    await edge1.proc.exited;
    const stale = await lab.exec("edge1", ["iptables-save", "-t", "nat"]);
    expect(stale.stdout).toContain("EDGEMESH-OUTPUT");
    mesh.startAgent("edge1");
    await waitFor(async () => ((await mesh.status<{ proxier?: { rules: number } }>("edge1").catch(() => ({}) as never)).proxier?.rules ?? 0) > 0, { timeoutMs: 20_000, description: "rules again" });
    await waitFor(async () => (await lab.exec("edge1", ["curl", "-sS", "-m", "5", "http://10.96.0.13/"])).stdout.trim() === "b-edge3", { timeoutMs: 20_000, description: "traffic after restart" });
    const save = (await lab.exec("edge1", ["iptables-save", "-t", "nat"])).stdout;
    expect(save.match(/^-A OUTPUT .*-j EDGEMESH-OUTPUT$/gm)?.length).toBe(1);
    expect(save.match(/^-A PREROUTING .*-j EDGEMESH-PREROUTING$/gm)?.length).toBe(1);

    mesh.agents.get("edge1")!.proc.kill("SIGTERM");
    const st = await mesh.agents.get("edge1")!.proc.exited;
    expect(st.code).toBe(0);
    const after = await lab.exec("edge1", ["iptables-save", "-t", "nat"]);
    expect(after.stdout).not.toContain("EDGEMESH");
    const routes = await lab.exec("edge1", ["ip", "route", "show", "proto", "96"]);
    expect(routes.stdout.trim()).toBe("");
  }, 90_000);
});
