// The agent's DNS as an application on an edge node meets it: edge1's
// resolv.conf points at 169.254.96.16 with the Kubernetes search list, so
// short names resolve through glibc (`getent hosts echo`). The agent runs
// DNS-only (no proxier), so it brings the bridge IP up itself. Its upstreams
// come from that same resolv.conf, minus itself: a silent fake on edge3
// (timeout → next) and an answering fake on cloud.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "../lab/index.ts";
import type { LabProcess } from "../lab/proc.ts";
import { ensureBinary, ROOT } from "../util/run.ts";
import { dig, rdata } from "./dig.ts";
import { tempDir } from "../util/temp.ts";
import { trustLine } from "../util/trust.ts";

const UPSTREAM = join(ROOT, "test/fixtures/dns-upstream.ts");
const BRIDGE = "169.254.96.16";
let lab: Lab;
let agent: LabProcess;
let silent: LabProcess;
let answering: LabProcess;
let netnsDir = "";
let createdDirs: string[] = [];

const queriesSeen = (p: LabProcess, name: string) => p.output("stdout").split("\n").filter((l) => l.startsWith("query ") && l.split(" ")[2] === name).length;

beforeAll(async () => {
  binary = await ensureBinary();
  lab = await Lab.create({ name: "dns" });
  const h = lab.hosts;
  // `ip netns exec` bind-mounts this over /etc/resolv.conf for everything run in edge1
  netnsDir = `/etc/netns/${h.edge1.ns}`;
  createdDirs = ["/etc/netns", netnsDir].filter((d) => !existsSync(d)).reverse();
  mkdirSync(netnsDir, { recursive: true });
  writeFileSync(
    join(netnsDir, "resolv.conf"),
    [`nameserver ${BRIDGE}`, `nameserver ${h.edge3.ip}`, `nameserver ${h.cloud.ip}`, "search demo.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5 timeout:5 attempts:1", ""].join("\n"),
  );

  silent = lab.spawn("edge3", [BUN, UPSTREAM, "0.0.0.0", "53", "198.51.100.3", "--silent"]);
  answering = lab.spawn("cloud", [BUN, UPSTREAM, "0.0.0.0", "53", "198.51.100.7"]);
  await Promise.all([silent.waitForOutput(/listening/, { timeoutMs: 10_000 }), answering.waitForOutput(/listening/, { timeoutMs: 10_000 })]);

  dir = tempDir("edgemesh-dns-lab");
  writeFileSync(join(dir, "psk"), "dns-lab-secret-0123456789abcdef\n", { mode: 0o600 });
  agent = startAgent("edge1", "proxy: {enable: false}");
  await agent.waitForOutput(/dns listening/, { timeoutMs: 15_000 });
}, 60_000);

let dir = "";
let binary = "";
function startAgent(host: "edge1" | "edge2", extra: string): LabProcess {
  const config = join(dir, `${host}.yaml`);
  writeFileSync(
    config,
    `nodeName: ${host}
${trustLine(dir, host)}
psk: psk
adminListen: 127.0.0.1:10556
agent:
  metadata:
    source: static
    static:
      services:
        - {name: echo, namespace: demo, clusterIP: 10.96.0.10, ports: [{name: http, port: 80}], endpoints: [{ip: 10.10.2.12, nodeName: edge2}]}
        - {name: db, namespace: demo, clusterIP: None, ports: [{name: pg, port: 5432}], endpoints: [{ip: 10.10.2.20, hostname: db-0, nodeName: edge2}]}
        - {name: web, namespace: other, clusterIP: 10.96.0.20, ports: [{port: 80}]}
  tunnel: {listenAddresses: [127.0.0.1]}
  ${extra}
`,
  );
  return lab.spawn(host, [binary, "agent", "--config", config], { logFile: join(dir, `${host}.log`) });
}

afterAll(async () => {
  if (process.env.EDGEMESH_TEST_LOGS) console.error(agent?.output("both"));
  try {
    await lab?.destroy();
  } finally {
    if (netnsDir) {
      rmSync(join(netnsDir, "resolv.conf"), { force: true });
      // only if empty: another test may have put its own namespace's files there meanwhile
      for (const d of createdDirs) {
        try {
          rmdirSync(d);
        } catch {
          // not empty, or already gone
        }
      }
    }
  }
}, 30_000);

describe("DNS on an edge node", () => {
  test("the bridge IP is brought up by the DNS module when the proxier is off", async () => {
    const r = await lab.execOrThrow("edge1", ["ip", "-j", "-4", "addr", "show", "to", `${BRIDGE}/32`]);
    expect(r.stdout).toContain(BRIDGE);
    const st = await lab.fetchStatus<{ dns: { upstreams: string[] } }>("edge1", "127.0.0.1:10556");
    // resolv.conf's nameservers, without ourselves
    expect(st.dns.upstreams).toEqual([`${lab.hosts.edge3.ip}:53`, `${lab.hosts.cloud.ip}:53`]);
  });

  // first: before anything else was forwarded, the silent upstream is still the one asked first
  test("other names are forwarded: the silent first upstream times out, the next answers; the answer is then cached", async () => {
    const t0 = performance.now();
    const r = await dig(BRIDGE, 53, ["www.example.test"], { ns: lab.hosts.edge1.ns, timeoutS: 5 });
    const ms = performance.now() - t0;
    expect(r.status).toBe("NOERROR");
    expect(rdata(r, "A")).toEqual(["198.51.100.7"]);
    expect(ms).toBeGreaterThan(1500); // it waited for the silent one first
    await waitFor(() => queriesSeen(silent, "www.example.test") === 1 && queriesSeen(answering, "www.example.test") === 1, { timeoutMs: 2000, description: "each upstream asked once" });

    // cached: the upstreams hear nothing more
    const again = await dig(BRIDGE, 53, ["www.example.test"], { ns: lab.hosts.edge1.ns });
    expect(rdata(again, "A")).toEqual(["198.51.100.7"]);
    // a new name goes straight to the upstream that answered last, no timeout
    const t1 = performance.now();
    const other = await lab.exec("edge1", ["getent", "hosts", "api.example.test"], { timeoutMs: 15_000 });
    expect(other.stdout).toMatch(/^198\.51\.100\.7\s+api\.example\.test/);
    expect(performance.now() - t1).toBeLessThan(1500);
    await Bun.sleep(100);
    expect(queriesSeen(silent, "www.example.test") + queriesSeen(answering, "www.example.test")).toBe(2);
    expect(queriesSeen(silent, "api.example.test")).toBe(0);
    // NXDOMAIN from upstream reaches the application as "not found"
    expect((await lab.exec("edge1", ["getent", "hosts", "nx.gone"], { timeoutMs: 15_000 })).code).toBe(2);
  }, 30_000);

  test("short names resolve as an application sees them, through the search list", async () => {
    for (const name of ["echo", "echo.demo", "echo.demo.svc", "echo.demo.svc.cluster.local", "web.other"]) {
      const r = await lab.exec("edge1", ["getent", "hosts", name], { timeoutMs: 15_000 });
      expect({ name, code: r.code, out: r.stdout.trim().split(/\s+/)[0] }).toEqual({ name, code: 0, out: name === "web.other" ? "10.96.0.20" : "10.96.0.10" });
    }
    expect((await lab.exec("edge1", ["getent", "hosts", "db-0.db"])).stdout).toMatch(/^10\.10\.2\.20\s+db-0\.db\.demo\.svc\.cluster\.local/);
    // dig with the resolv.conf's search list, as a second opinion
    const r = await lab.exec("edge1", ["dig", "+search", "+time=3", "+tries=1", "echo", "A"]);
    expect(r.stdout).toMatch(/^echo\.demo\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.96\.0\.10$/m);
  }, 60_000);

  test("on stop the agent removes the device it created", async () => {
    agent.kill("SIGTERM");
    await agent.exited;
    const r = await lab.exec("edge1", ["ip", "link", "show", "edgemesh0"]);
    expect(r.code).not.toBe(0);
    const a = await lab.execOrThrow("edge1", ["ip", "-4", "addr"]);
    expect(a.stdout).not.toContain(BRIDGE);
  }, 20_000);

  test("with the proxier on, the proxier brings the bridge IP up and DNS answers there too", async () => {
    // edge2 has no resolv.conf of its own here: upstreams are set, pointing into the lab
    const a = startAgent("edge2", `proxy: {enable: true}\n  dns: {upstreamServers: ["${lab.hosts.cloud.ip}"]}`);
    try {
      await a.waitForOutput(/dns listening/, { timeoutMs: 15_000 });
      const r = await dig(BRIDGE, 53, ["+tcp", "echo.demo.svc.cluster.local"], { ns: lab.hosts.edge2.ns });
      expect(rdata(r, "A")).toEqual(["10.96.0.10"]);
      expect(rdata(await dig(BRIDGE, 53, ["www.example.test"], { ns: lab.hosts.edge2.ns }), "A")).toEqual(["198.51.100.7"]);
      const st = await lab.fetchStatus<{ proxier: { device: string } }>("edge2", "127.0.0.1:10556");
      expect(st.proxier.device).not.toBe("none");
      expect(a.output("both")).not.toMatch(/\[dns\] .*bridge/);
    } finally {
      a.kill("SIGTERM");
      await a.exited;
    }
    expect((await lab.execOrThrow("edge2", ["ip", "-4", "addr"])).stdout).not.toContain(BRIDGE);
  }, 30_000);
});
