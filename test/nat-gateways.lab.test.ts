// Gateways of the field (issue 17), compiled binary in the NAT lab: both NATs
// answer an unsolicited SYN with a RST (a Linux gateway with no INPUT policy,
// many CPE routers) or an ICMP port unreachable, instead of dropping it; and
// NATs that forget idle TCP mappings after 15 s. Every run starts fresh
// agents with the NATs' conntrack tables flushed. (The full matrix with 20
// runs per cell is scripts/bench-nat.ts; BENCHMARKS.md has its table.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { endLab, restartFresh, socksEcho, startMesh, TUNNEL_PORT, type Mesh } from "./lab/mesh.ts";
import { ensureBinary } from "./util/run.ts";
import type { PeerStatus } from "../src/admin/status.ts";

const FIX = join(import.meta.dir, "fixtures");
let lab: Lab;
let mesh: Mesh;

type Peer = Pick<PeerStatus, "nodeName" | "path" | "relayedReason">;

beforeAll(async () => {
  lab = await Lab.create({ name: "gateways" });
  mesh = startMesh(lab, { binary: await ensureBinary(), agents: [{ name: "edge1", host: "edge1" }, { name: "edge2", host: "edge2" }] });
  lab.spawn("edge2", [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9001", "echo"]);
  await mesh.startAll();
}, 60_000);

afterAll(() => endLab(lab, mesh), 30_000);

const echo = () => socksEcho(lab, "edge1", "edge2", 9001, 15_000);

const peer = async (): Promise<Peer | undefined> => (await mesh.status<{ peers: Peer[] }>("edge1")).peers.find((p) => p.nodeName === "edge2");

/** fresh agents and NAT state, a first stream, then ms until edge2 is direct (undefined: not within `withinMs`) */
async function freshRun(withinMs: number): Promise<{ served: boolean; msToDirect?: number; last?: Peer }> {
  await restartFresh(lab, mesh, ["edge1", "edge2"], ["nat1", "nat2", ...("cgnat" in lab.hosts ? ["cgnat"] : [])]);
  const t0 = performance.now();
  // served within 4 s: a server still holding a connection that died with a
  // NAT's old address drops it after a 2 s ping (stale-connections.ts)
  let served = await echo();
  while (!served && performance.now() - t0 < 4_000) served = await echo();
  let last: Peer | undefined;
  const direct = await waitFor(async () => (last = await peer())?.path === "direct", { timeoutMs: withinMs, intervalMs: 20, description: "direct" }).then(
    () => true,
    () => false,
  );
  return { served, last, ...(direct ? { msToDirect: Math.round(performance.now() - t0) } : {}) };
}

test("gateways that answer unsolicited SYNs with a RST: the punch sends its SYN again and goes direct (3 fresh starts)", async () => {
  await lab.setGateway("nat1", { inbound: "rst" });
  await lab.setGateway("nat2", { inbound: "rst" });
  const runs = [];
  // one round (three attempts of up to 3 s) fits in 10 s
  for (let i = 0; i < 3; i++) runs.push(await freshRun(10_000));
  console.log(`RST gateways: ms to direct ${runs.map((r) => r.msToDirect ?? "relayed").join(", ")}`);
  for (const r of runs) {
    expect(r.served).toBe(true);
    expect(r.msToDirect, `still relayed: ${r.last?.relayedReason ?? ""}`).toBeNumber();
  }
  const m = (await lab.exec("edge1", ["curl", "-sS", "http://127.0.0.1:10556/status"])).stdout + (await lab.exec("edge2", ["curl", "-sS", "http://127.0.0.1:10556/status"])).stdout;
  // the far gateway did refuse SYNs, and they were sent again
  expect(m).toMatch(/"refusedSyns":[1-9]/);
}, 90_000);

test("gateways that answer with ICMP port unreachable: the punch filter keeps the SYN alive and every run goes direct (3 fresh starts each, against ICMP and against RST with a port pool)", async () => {
  const runs = [];
  // the filter's counters start again with each agent: summed over the runs, before the next restart
  const dropped = async (host: string) => (await lab.exec(host, ["iptables", "-w", "5", "-L", "EDGEMESH-PUNCH", "-v", "-n", "-x"])).stdout.split("\n").filter((l) => l.includes("DROP")).reduce((n, l) => n + Number(l.trim().split(/\s+/)[0]), 0);
  let drops = 0;
  for (const far of [{ inbound: "icmp", mapping: "preserve" }, { inbound: "rst", mapping: "range" }] as const) {
    await lab.setGateway("nat1", { inbound: "icmp" });
    await lab.setGateway("nat2", far);
    for (let i = 0; i < 3; i++) {
      runs.push(await freshRun(10_000));
      drops += (await dropped("edge1")) + (await dropped("edge2"));
    }
    await lab.setGateway("nat2", { mapping: "preserve" });
  }
  console.log(`ICMP gateways: ms to direct ${runs.map((r) => r.msToDirect ?? `relayed (${r.last?.relayedReason ?? ""})`).join(", ")}; ICMP errors dropped by the filter: ${drops}`);
  for (const r of runs) {
    expect(r.served).toBe(true);
    expect(r.msToDirect, `still relayed: ${r.last?.relayedReason ?? ""}`).toBeNumber();
  }
  // a SYN that reached the far ICMP gateway before the peer's own SYN had opened it drew an ICMP, which the filter dropped
  expect(drops).toBeGreaterThan(0);
  // stopping the agent takes the chain and its jump with it
  await mesh.agents.get("edge1")!.proc!.stop(5000);
  expect((await lab.exec("edge1", ["iptables", "-w", "5", "-S"])).stdout).not.toContain("EDGEMESH-PUNCH");
  mesh.startAgent("edge1");
  await mesh.waitReserved(["edge1"]);
  expect(await echo()).toBe(true);
}, 120_000);

test("a NAT that forgets idle TCP mappings after 15 s: keepalives hold the idle direct connection for 25 s", async () => {
  await lab.setGateway("nat1", { inbound: "drop", tcpEstablishedTimeoutS: 15 });
  await lab.setGateway("nat2", { inbound: "drop", tcpEstablishedTimeoutS: 15 });
  const run = await freshRun(5_000);
  expect(run.msToDirect, run.last?.relayedReason ?? "").toBeNumber();
  const flows = async () => (await lab.exec("nat1", ["conntrack", "-L", "-p", "tcp", "--orig-src", lab.hosts.edge1.ip, "--dst", lab.hosts.nat2.wanIp, "--orig-port-src", String(TUNNEL_PORT)])).stdout;
  expect(await flows()).toContain("ESTABLISHED");
  await Bun.sleep(25_000);
  // the same mapping is still there (refreshed by the keepalives), and serves at once
  expect(await flows()).toContain("ESTABLISHED");
  const t0 = performance.now();
  expect(await echo()).toBe(true);
  expect(performance.now() - t0).toBeLessThan(2000);
  expect((await peer())?.path).toBe("direct");
  expect(mesh.logs("edge1").match(/hole punched/g)?.length ?? 0).toBeLessThanOrEqual(1);
}, 90_000);

test("double NAT (edge2 behind nat2 behind a carrier-grade NAT in 100.64.0.0/10): punched direct through both when they keep ports; relayed and served when the carrier randomises", async () => {
  // the agents stop first: moving nat2 under a live connection would leave
  // its sockets retransmitting FINs into the void (FIN-WAIT-1 orphans that
  // hold the punch's 4-tuple for minutes)
  await Promise.all(["edge1", "edge2"].map((n) => mesh.agents.get(n)?.proc?.stop(5000)));
  const cgnat = await lab.addCarrierNat("nat2");
  await lab.setGateway("nat1", { inbound: "drop", tcpEstablishedTimeoutS: 432000 });
  await lab.setGateway("nat2", { inbound: "drop", tcpEstablishedTimeoutS: 432000 });
  const run = await freshRun(10_000);
  expect(run.served).toBe(true);
  // the world sees edge2 at the carrier's address
  const st = await mesh.status<{ holePunch: { publicAddresses: string[] } }>("edge2");
  expect(st.holePunch.publicAddresses).toEqual([`${cgnat.wanIp}:${TUNNEL_PORT}`]);
  expect(run.msToDirect, run.last?.relayedReason ?? "").toBeNumber();
  await lab.setGateway("cgnat", { mapping: "random" });
  const relayed = await freshRun(3_000);
  expect(relayed.served).toBe(true);
  expect(relayed.msToDirect).toBeUndefined();
}, 90_000);
