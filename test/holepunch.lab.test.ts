// Hole punching between two agents that are both behind NATs (compiled
// binary, NAT lab): edge1 behind nat1, edge2 behind nat2, both MASQUERADE
// with unsolicited inbound dropped, the tunnel server on cloud. The agents
// have no address hints for each other: the only paths are the server's relay
// and a hole punched through both NATs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { startMesh, SOCKS, TUNNEL_PORT, SERVER_PORT, type Mesh } from "./lab/mesh.ts";
import { ensureBinary, ROOT } from "./util/run.ts";

const FIX = join(ROOT, "test/fixtures");
const MiB = 1024 * 1024;
let lab: Lab;
let mesh: Mesh;

interface Peer {
  nodeName: string;
  path: string;
  relayedReason?: string;
}

async function socks(node: string, port: number, mode: string, n?: number): Promise<{ ok: boolean; error?: string; ms?: number }> {
  const r = await lab.exec("edge1", [BUN, join(FIX, "socks-client.ts"), SOCKS, node, String(port), mode, ...(n ? [String(n)] : [])], { timeoutMs: 60_000 });
  try {
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
  } catch {
    return { ok: false, error: `no result (exit ${r.code}): ${r.stdout} ${r.stderr}`.slice(0, 500) };
  }
}

async function pathTo(agent: string, peer: string): Promise<string | undefined> {
  const st = await mesh.status<{ peers: Peer[] }>(agent);
  return st.peers.find((p) => p.nodeName === peer)?.path;
}

/** how nat2 sees edge2's tunnel flows: the remote ends of its tracked TCP connections from edge2's listening port */
async function nat2Flows(): Promise<string[]> {
  const r = await lab.exec("nat2", ["conntrack", "-L", "-p", "tcp", "--orig-src", lab.hosts.edge2.ip, "--orig-port-src", String(TUNNEL_PORT)], { timeoutMs: 10_000 });
  const r2 = await lab.exec("nat2", ["conntrack", "-L", "-p", "tcp", "--reply-src", lab.hosts.edge2.ip, "--reply-port-src", String(TUNNEL_PORT)], { timeoutMs: 10_000 });
  const out: string[] = [];
  for (const line of `${r.stdout}\n${r2.stdout}`.split("\n")) {
    if (!line.includes("ESTABLISHED")) continue;
    // the original direction's destination is the far end, or for a flow the far end started, its source
    const m = /src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/.exec(line);
    if (!m) continue;
    out.push(m[1] === lab.hosts.edge2.ip ? `${m[2]}:${m[4]}` : `${m[1]}:${m[3]}`);
  }
  return [...new Set(out)];
}

async function restartAgents(): Promise<void> {
  await Promise.all(["edge1", "edge2"].map((n) => mesh.agents.get(n)?.proc?.stop(5000)));
  for (const n of ["edge1", "edge2"]) mesh.startAgent(n);
  await mesh.waitReserved(["edge1", "edge2"]);
}

/** the first stream from edge1 to edge2, then the time until edge1 shows edge2 as direct */
async function firstStreamToDirect(): Promise<{ relayedFirst: boolean; msToDirect: number }> {
  const t0 = performance.now();
  const echo = await socks("edge2", 9001, "echo");
  expect(echo, JSON.stringify(echo)).toMatchObject({ ok: true });
  // the log says how the first connection went
  const relayedFirst = /connected to peer node=edge2 path=relayed/.test(mesh.logs("edge1"));
  await waitFor(async () => (await pathTo("edge1", "edge2")) === "direct", { timeoutMs: 5_000, intervalMs: 20, description: "edge1 → edge2 direct" });
  return { relayedFirst, msToDirect: performance.now() - t0 };
}

beforeAll(async () => {
  const binary = await ensureBinary();
  lab = await Lab.create({ name: "punch" });
  mesh = startMesh(lab, {
    binary,
    agents: [
      { name: "edge1", host: "edge1" },
      { name: "edge2", host: "edge2" },
    ],
  });
  lab.spawn("edge2", [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9000", "digest"]);
  lab.spawn("edge2", [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9001", "echo"]);
  await mesh.startAll();
}, 60_000);

afterAll(async () => {
  mesh?.dumpLogsIfAsked();
  await lab?.destroy();
}, 30_000);

describe("hole punching between two NATed agents", () => {
  test("a stream edge1 → edge2 starts relayed and is direct within 2 s; nat2 tracks the flow to nat1, not only to the server", async () => {
    const { relayedFirst, msToDirect } = await firstStreamToDirect();
    expect(relayedFirst).toBe(true);
    expect(msToDirect).toBeLessThan(2000);
    const flows = await nat2Flows();
    expect(flows).toContain(`${lab.hosts.nat1.wanIp}:${TUNNEL_PORT}`);
    expect(flows).toContain(`${lab.hosts.cloud.ip}:${SERVER_PORT}`);
    expect(await socks("edge2", 9001, "echo")).toMatchObject({ ok: true });
    const m = await (await lab.exec("edge1", ["curl", "-sS", "http://127.0.0.1:10556/metrics"])).stdout;
    const m2 = await (await lab.exec("edge2", ["curl", "-sS", "http://127.0.0.1:10556/metrics"])).stdout;
    expect(`${m}\n${m2}`).toMatch(/edgemesh_tunnel_hole_punch_successes_total [1-9]/);
    expect(`${m}\n${m2}`).toMatch(/edgemesh_tunnel_hole_punch_last_ms_to_direct \d+/);
    // status says the dial mode, and that the server and punch dials left from the listening port
    const hp = (await mesh.status<{ holePunch: { transport: { sharedPort: boolean; dials: { fromListenPort: number } } } }>("edge1")).holePunch;
    expect(hp.transport.sharedPort).toBe(true);
    expect(hp.transport.dials.fromListenPort).toBeGreaterThanOrEqual(2);
  }, 30_000);

  test("the server stopped after the upgrade: the direct path keeps working", async () => {
    expect(await pathTo("edge1", "edge2")).toBe("direct");
    mesh.server.kill("SIGKILL");
    await mesh.server.exited;
    await Bun.sleep(1000);
    expect(await socks("edge2", 9001, "echo")).toMatchObject({ ok: true });
    expect(await pathTo("edge1", "edge2")).toBe("direct");
    mesh.startServer();
    await mesh.waitReserved(["edge1", "edge2"]);
  }, 30_000);

  test("64 MiB sent while the path is upgraded arrive intact: the transfer stays on the relay, later streams go direct", async () => {
    await restartAgents();
    const t0 = Date.now();
    const r = await socks("edge2", 9000, "digest", 64 * MiB);
    expect(r, JSON.stringify(r)).toMatchObject({ ok: true });
    // the punch happened while the transfer ran
    const punched = /(\S+) INFO  \[tunnel\] hole punched: direct connection node=edge2/.exec(mesh.logs("edge1"));
    expect(punched).not.toBeNull();
    const at = Date.parse(punched![1]!);
    expect(at).toBeGreaterThan(t0);
    expect(at).toBeLessThan(t0 + (r.ms ?? 0));
    expect(await pathTo("edge1", "edge2")).toBe("direct");
    expect(await socks("edge2", 9000, "digest", 4 * MiB)).toMatchObject({ ok: true });
  }, 60_000);

  test("both agents restarted: direct again within 2 s of the first stream, 20 runs out of 20", async () => {
    const times: number[] = [];
    for (let run = 0; run < 20; run++) {
      await restartAgents();
      const { msToDirect } = await firstStreamToDirect();
      times.push(Math.round(msToDirect));
    }
    console.log(`hole punch: first stream → direct, 20 runs (ms): ${times.join(" ")}`);
    expect(times.filter((t) => t < 2000)).toHaveLength(20);
  }, 180_000);

  test("with a NAT that randomises ports, the path stays relayed and works; status says why", async () => {
    await lab.setNatMapping("nat2", "random");
    try {
      await restartAgents();
      expect(await socks("edge2", 9001, "echo")).toMatchObject({ ok: true });
      // both sides say why: the round's initiator with its schedule, the responder too
      const both = await waitFor(
        async () => {
          const peers = [];
          for (const [a, b] of [["edge1", "edge2"], ["edge2", "edge1"]]) peers.push((await mesh.status<{ peers: Peer[] }>(a!)).peers.find((x) => x.nodeName === b));
          return peers.every((p) => /^hole punching failed/.test(p?.relayedReason ?? "") && p!.path === "relayed") ? peers.map((p) => p!.relayedReason!) : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 250, description: "a reason for staying relayed, on both sides" },
      );
      expect(both.filter((r) => /^hole punching failed .*; next try in 30 s$/.test(r))).toHaveLength(1);
      expect(both.filter((r) => /^hole punching failed .*; the peer starts the next round$/.test(r))).toHaveLength(1);
      expect(await socks("edge2", 9000, "digest", 4 * MiB)).toMatchObject({ ok: true });
    } finally {
      // back to a port-preserving NAT with no mapping left from the random one
      // (conntrack keeps a 4-tuple's mapping after the rule changes): agents
      // stopped first, so their connections end cleanly
      await Promise.all(["edge1", "edge2"].map((n) => mesh.agents.get(n)?.proc?.stop(5000)));
      await lab.setNatMapping("nat2", "preserve");
      await lab.exec("nat2", ["conntrack", "-D", "-p", "tcp", "--orig-src", lab.hosts.edge2.ip]);
      for (const n of ["edge1", "edge2"]) mesh.startAgent(n);
      await mesh.waitReserved(["edge1", "edge2"]);
    }
  }, 60_000);
});

describe("tunnel servers given by name", () => {
  test("the name is resolved and dialled from the listening port, so agents still punch (and status names the server as configured)", async () => {
    const made = !existsSync("/etc/netns");
    const dirs = ["edge1", "edge2"].map((n) => `/etc/netns/${lab.host(n).ns}`);
    try {
      // `ip netns exec` mounts these over /etc/hosts for the agents
      for (const d of dirs) {
        mkdirSync(d, { recursive: true });
        writeFileSync(join(d, "hosts"), `127.0.0.1 localhost\n${lab.hosts.cloud.ip} tunnel.lab\n`);
      }
      for (const n of ["edge1", "edge2"]) {
        const a = mesh.agents.get(n)!;
        await a.proc.stop(5000);
        writeFileSync(a.config, readFileSync(a.config, "utf8").replace(`${lab.hosts.cloud.ip}:${SERVER_PORT}`, `tunnel.lab:${SERVER_PORT}`));
        mesh.startAgent(n);
      }
      for (const n of ["edge1", "edge2"]) {
        await waitFor(
          async () => (await mesh.status<{ servers: Array<{ address: string; reservation: boolean }> }>(n)).servers.some((s) => s.address === `tunnel.lab:${SERVER_PORT}` && s.reservation),
          { timeoutMs: 20_000, intervalMs: 200, description: `${n} reserved on tunnel.lab` },
        );
      }
      const { msToDirect } = await firstStreamToDirect();
      expect(msToDirect).toBeLessThan(2000);
      expect(await nat2Flows()).toContain(`${lab.hosts.nat1.wanIp}:${TUNNEL_PORT}`);
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      if (made) rmSync("/etc/netns", { recursive: true, force: true });
    }
  }, 60_000);
});
