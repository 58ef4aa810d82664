// Relay agents (issue 17): an agent others can reach (here "gw" on the WAN,
// as a site gateway with a port forward would be) runs with
// agent.tunnel.relay and a relay certificate; edge1 and edge2, behind NATs
// that randomise ports (no punching), list it in agent.servers beside the
// tunnel server. With the server killed they still reach each other, through
// the relay agent. The server and the relay agent are two observers of each
// agent's NAT, so the agents also tell their NAT's mapping behaviour.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { endLab, socksEcho, startMesh, TUNNEL_PORT, type Mesh } from "./lab/mesh.ts";
import { ensureBinary } from "./util/run.ts";

const FIX = join(import.meta.dir, "fixtures");
let lab: Lab;
let mesh: Mesh;
let gwIp = "";

interface ServerRow {
  address: string;
  kind?: string;
  reservation: boolean;
}

beforeAll(async () => {
  lab = await Lab.create({ name: "relayagent" });
  gwIp = (await lab.addHost("gw", "wan")).ip;
  await lab.setNatMapping("nat1", "random");
  await lab.setNatMapping("nat2", "random");
  const binary = await ensureBinary();
  const viaGw = [`${gwIp}:${TUNNEL_PORT}`];
  mesh = startMesh(lab, {
    binary,
    agents: [
      { name: "gw", host: "gw", relay: true },
      { name: "edge1", host: "edge1", extraServers: viaGw },
      { name: "edge2", host: "edge2", extraServers: viaGw },
      { name: "edge3", host: "edge3" },
    ],
  });
  lab.spawn("edge2", [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9001", "echo"]);
  lab.spawn("edge3", [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9001", "echo"]);
  await mesh.startAll();
}, 60_000);

afterAll(() => endLab(lab, mesh), 30_000);

const echo = () => socksEcho(lab, "edge1", "edge2", 9001, 5_000);

test("agents hold a reservation on the server and on the relay agent, which status calls a relay", async () => {
  await waitFor(
    async () => {
      for (const n of ["edge1", "edge2"]) {
        const st = await mesh.status<{ servers: ServerRow[] }>(n);
        if (!st.servers.find((s) => s.address === `${gwIp}:${TUNNEL_PORT}` && s.kind === "relay" && s.reservation)) return false;
      }
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 250, description: "edge1 and edge2 reserved on the relay agent gw" },
  );
  const gw = await mesh.status<{ relay?: { reservations: number } }>("gw");
  expect(gw.relay?.reservations).toBeGreaterThanOrEqual(2);
}, 40_000);

test("the NAT report: two observers see different ports of a port-randomising NAT: endpoint-dependent, in status and /metrics", async () => {
  await waitFor(async () => (await mesh.status<{ nat?: { mapping: string } }>("edge1")).nat?.mapping === "endpoint-dependent", {
    timeoutMs: 10_000,
    intervalMs: 200,
    description: "edge1's NAT classified",
  });
  const st = await mesh.status<{ nat: { mapping: string; observed: Array<{ observer: string; address: string }> } }>("edge1");
  expect(st.nat.observed.map((o) => o.observer).sort()).toEqual(["relay gw", "server cloud"]);
  expect(new Set(st.nat.observed.map((o) => o.address)).size).toBe(2);
  const metrics = (await lab.exec("edge1", ["curl", "-sS", "http://127.0.0.1:10556/metrics"])).stdout;
  expect(metrics).toContain('edgemesh_tunnel_nat_mapping{behaviour="endpoint-dependent"} 1');
  expect(metrics).toContain('edgemesh_tunnel_nat_mapping{behaviour="endpoint-independent"} 0');
}, 20_000);

test("two nodes behind the same (port-randomising) NAT, without address hints: direct over their LAN, no hairpinning needed", async () => {
  expect(await socksEcho(lab, "edge1", "edge3")).toBe(true);
  // relayed first (no hint), then edge3 dials edge1 back on the LAN address edge1 announced
  await waitFor(async () => (await mesh.status<{ peers: Array<{ nodeName: string; path: string }> }>("edge1")).peers.find((p) => p.nodeName === "edge3")?.path === "direct", {
    timeoutMs: 10_000,
    intervalMs: 100,
    description: "edge1 → edge3 direct",
  });
  // a TCP connection between the two LAN addresses (edge3 dialled back: to edge1's tunnel port)
  const lan = (await lab.exec("edge1", ["ss", "-Htn", "state", "established", "dst", lab.hosts.edge3.ip])).stdout;
  expect(lan).toContain(`${lab.hosts.edge1.ip}:${TUNNEL_PORT}`);
}, 30_000);

test("with the tunnel server dead, edge1 reaches edge2 through the relay agent", async () => {
  expect(await echo()).toBe(true);
  mesh.server.kill("SIGKILL");
  await mesh.server.exited;
  const t0 = performance.now();
  let served = false;
  while (!served && performance.now() - t0 < 10_000) served = await echo();
  const ms = performance.now() - t0;
  console.log(`server killed: next request served through the relay agent after ${Math.round(ms)} ms`);
  expect(served).toBe(true);
  expect(ms).toBeLessThan(2000);
  // a new connection after the server's death can only have gone through gw
  const gw = await mesh.status<{ relay: { connections: number } }>("gw");
  expect(gw.relay.connections).toBeGreaterThanOrEqual(1);
  expect(mesh.logs("edge1")).toContain(`path=relayed via=/ip4/${gwIp}/tcp/${TUNNEL_PORT}`);
}, 30_000);
