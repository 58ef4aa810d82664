// Flow control end to end (compiled binary, NAT lab, links shaped with tc):
// a fast backend behind a slow link, and a client that reads slowly, must not
// make any agent or the server hold the transfer in memory. Each case moves
// 512 MiB through ClusterIP interception on edge1 and checks every byte; the
// peak RSS of each process on the path (VmHWM, reset before the transfer) may
// exceed its idle RSS by at most 64 MiB.
//   direct:   edge1 ↔ edge3 over their LAN
//   relayed:  edge1 ↔ edge2 through the server (nat2 randomises ports, so no punch)
//   punched:  edge1 ↔ edge2 through a hole punched in both NATs
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { startMesh, type Mesh } from "./lab/mesh.ts";
import { ensureBinary, ROOT } from "./util/run.ts";

const FIX = join(ROOT, "test/fixtures");
const MiB = 1024 * 1024;
const TOTAL = Number(process.env.EDGEMESH_FLOW_MIB ?? 512) * MiB;
const LIMIT_MIB = 64;
const RATE = "200mbit";
const SRC3 = "10.96.0.91";
const SRC2 = "10.96.0.92";
const SINK3 = "10.96.0.93";
let lab: Lab;
let mesh: Mesh;

const kib = (pid: number, key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);

interface Growth {
  name: string;
  idleMiB: number;
  peakMiB: number;
  growthMiB: number;
}

/** runs `transfer` with the peak RSS of each process reset first; returns each one's growth over its RSS just before */
async function peakGrowth(procs: Record<string, number>, transfer: () => Promise<unknown>): Promise<Growth[]> {
  const idle: Record<string, number> = {};
  for (const [name, pid] of Object.entries(procs)) {
    writeFileSync(`/proc/${pid}/clear_refs`, "5"); // VmHWM := VmRSS
    idle[name] = kib(pid, "VmRSS");
  }
  await transfer();
  return Object.entries(procs).map(([name, pid]) => {
    const peak = kib(pid, "VmHWM");
    return { name, idleMiB: idle[name]! / 1024, peakMiB: peak / 1024, growthMiB: (peak - idle[name]!) / 1024 };
  });
}

async function shape(host: string, on: boolean): Promise<void> {
  if (on) await lab.execOrThrow(host, ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", RATE, "burst", "256kb", "latency", "100ms"]);
  else await lab.exec(host, ["tc", "qdisc", "del", "dev", "eth0", "root"]);
}

interface Xfer {
  ok: boolean;
  bytes?: number;
  ms?: number;
  mbps?: number;
  error?: string;
}

/** pulls from a tcp-source.ts backend (`rate`: a slow reader), or with `upload` sends to a tcp-sink.ts digest backend */
async function transfer(ip: string, streams: number, opts: { rate?: number; bytes?: number; upload?: boolean } = {}): Promise<Xfer> {
  const bytes = String(opts.bytes ?? TOTAL);
  const argv = opts.upload ? [join(FIX, "parallel-digest.ts"), ip, "9000", String(streams), bytes] : [join(FIX, "pull-digest.ts"), ip, "9100", String(streams), bytes, String(opts.rate ?? 0)];
  const r = await lab.exec("edge1", [BUN, ...argv], { timeoutMs: 170_000 });
  try {
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
  } catch {
    return { ok: false, error: `no result (exit ${r.code}): ${r.stdout} ${r.stderr}`.slice(0, 500) };
  }
}

const pids = (...names: string[]): Record<string, number> => Object.fromEntries(names.map((n) => [n, n === "server" ? mesh.server.pid : mesh.agents.get(n)!.proc.pid]));

async function pathTo(agent: string, peer: string): Promise<string | undefined> {
  const st = await mesh.status<{ peers: Array<{ nodeName: string; path: string }> }>(agent);
  return st.peers.find((p) => p.nodeName === peer)?.path;
}

/** one shaped case: the transfer succeeds with every byte intact and no process grows past the limit */
async function expectBounded(label: string, shaped: string | undefined, procs: Record<string, number>, run: () => Promise<Xfer>): Promise<void> {
  if (shaped) await shape(shaped, true);
  let result: Xfer = { ok: false };
  try {
    const growth = await peakGrowth(procs, async () => (result = await run()));
    console.log(`flow ${label}: ${JSON.stringify(result)} ${growth.map((g) => `${g.name} idle ${g.idleMiB.toFixed(1)} peak ${g.peakMiB.toFixed(1)} (+${g.growthMiB.toFixed(1)}) MiB`).join(", ")}`);
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, bytes: TOTAL });
    for (const g of growth) expect(g.growthMiB, `${g.name} grew by ${g.growthMiB.toFixed(1)} MiB`).toBeLessThanOrEqual(LIMIT_MIB);
  } finally {
    if (shaped) await shape(shaped, false);
  }
}

beforeAll(async () => {
  const binary = await ensureBinary();
  lab = await Lab.create({ name: "flow" });
  await lab.setNatMapping("nat2", "random"); // relayed first
  const h = lab.hosts;
  const svc = (name: string, ip: string, ep: string, node: string, port = 9100) =>
    `- {name: ${name}, namespace: flow, clusterIP: ${ip}, ports: [{name: p, port: ${port}, targetPort: ${port}}], endpoints: [{ip: ${ep}, nodeName: ${node}}]}`;
  mesh = startMesh(lab, {
    binary,
    proxy: true,
    logLevel: process.env.EDGEMESH_FLOW_LOG_LEVEL,
    agents: [
      { name: "edge1", host: "edge1", hints: { edge3: [h.edge3.ip] } },
      { name: "edge3", host: "edge3", hints: { edge1: [h.edge1.ip] } },
      { name: "edge2", host: "edge2" },
    ],
    services: [svc("src3", SRC3, h.edge3.ip, "edge3"), svc("src2", SRC2, h.edge2.ip, "edge2"), svc("sink3", SINK3, h.edge3.ip, "edge3", 9000)],
  });
  lab.spawn("edge3", [BUN, join(FIX, "tcp-source.ts"), "0.0.0.0", "9100"]);
  lab.spawn("edge2", [BUN, join(FIX, "tcp-source.ts"), "0.0.0.0", "9100"]);
  lab.spawn("edge3", [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9000", "digest"]);
  await mesh.startAll();
  // a first small transfer each way: the tunnel connections are up and the code is warm before idle is read
  await waitFor(async () => (await transfer(SRC3, 1, { bytes: 4 * MiB })).ok, { timeoutMs: 20_000, description: "edge1 → edge3 works" });
}, 90_000);

afterAll(async () => {
  mesh?.dumpLogsIfAsked();
  await lab?.destroy();
}, 30_000);

describe(`direct path (edge3's uplink shaped to ${RATE})`, () => {
  test("one stream from a fast backend: every agent stays within 64 MiB of idle", async () => {
    await expectBounded("direct 1", "edge3", pids("edge1", "edge3"), () => transfer(SRC3, 1));
  }, 180_000);

  test("16 parallel streams", async () => {
    await expectBounded("direct 16", "edge3", pids("edge1", "edge3"), () => transfer(SRC3, 16));
  }, 180_000);

  test("a client that reads slowly (no shaping, the client reads at 25 MB/s)", async () => {
    await expectBounded("direct slow reader", undefined, pids("edge1", "edge3"), () => transfer(SRC3, 1, { rate: 25_000_000 }));
  }, 180_000);

  test("upload: a fast client behind a shaped uplink (edge1's)", async () => {
    await expectBounded("direct upload", "edge1", pids("edge1", "edge3"), () => transfer(SINK3, 4, { upload: true }));
  }, 180_000);
});

describe(`relayed path (the server's link shaped to ${RATE})`, () => {
  test("one stream: the server and both agents stay within 64 MiB of idle", async () => {
    expect((await transfer(SRC2, 1, { bytes: 4 * MiB })).ok).toBe(true);
    expect(await pathTo("edge1", "edge2")).toBe("relayed");
    await expectBounded("relayed 1", "cloud", pids("edge1", "edge2", "server"), () => transfer(SRC2, 1));
  }, 180_000);

  test("16 parallel streams", async () => {
    await expectBounded("relayed 16", "cloud", pids("edge1", "edge2", "server"), () => transfer(SRC2, 16));
    expect(await pathTo("edge1", "edge2")).toBe("relayed");
  }, 180_000);
});

describe(`hole-punched path (edge2's uplink shaped to ${RATE})`, () => {
  beforeAll(async () => {
    await Promise.all(["edge1", "edge2"].map((n) => mesh.agents.get(n)!.proc.stop(5000)));
    await lab.setNatMapping("nat2", "preserve");
    await lab.exec("nat2", ["conntrack", "-D", "-p", "tcp", "--orig-src", lab.hosts.edge2.ip]);
    for (const n of ["edge1", "edge2"]) mesh.startAgent(n);
    await mesh.waitReserved(["edge1", "edge2"]);
    await waitFor(async () => (await transfer(SRC2, 1, { bytes: 4 * MiB })).ok && (await pathTo("edge1", "edge2")) === "direct", { timeoutMs: 30_000, intervalMs: 500, description: "edge1 → edge2 punched" });
  }, 60_000);

  test("one stream", async () => {
    await expectBounded("punched 1", "edge2", pids("edge1", "edge2", "server"), () => transfer(SRC2, 1));
    expect(await pathTo("edge1", "edge2")).toBe("direct");
  }, 180_000);

  test("16 parallel streams", async () => {
    await expectBounded("punched 16", "edge2", pids("edge1", "edge2", "server"), () => transfer(SRC2, 16));
  }, 180_000);
});
