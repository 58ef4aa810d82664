// The full application path in the NAT lab (needs root): an app on edge1
// connects to a ClusterIP; iptables sends it to edge1's agent, which carries
// it through the tunnel (direct, LAN) to edge3's agent, which dials the
// backend. Every figure is put against the same client talking to the
// backend's own address, measured in the same run, with baseline clients at
// least as fast as a Node.js client on that path (a Bun client moves about
// half as much, which would double every ratio):
//   throughput: iperf3 (Debian), one stream and 16, both ways; agent
//     CPU-seconds per GiB, each agent, during the one-stream transfer;
//   latency: test/fixtures/latency.mjs under Node.js: 64-byte echo RTT and
//     time to first byte of new connections, p50/p99 added over plain TCP;
//   memory: idle RSS (anonymous and file-backed), peak RSS growth of both
//     agents while MiB flow through a tc-shaped 200 Mbit/s link (fast backend
//     behind the slow uplink, and a fast client behind one), memory per
//     connection with 1,000 and 10,000 connections open;
// the floor: the same RTT and first byte through two bare relay processes
// (test/fixtures/bare-relay.ts) where the agents are, i.e. what two extra
// userspace hops cost on this machine before any encryption or muxing;
// then the control plane: 1,000 services × 2 ports programmed, 20 single
// changes, idle CPU with 1,000 services.
// Usage: bun scripts/bench-mesh.ts [MiB per transfer, default 1024]
//   BENCH_ONLY=rtt,ttfb (any of conns, bulk, rtt, ttfb, shaped, floor,
//   control) runs only those parts, for quick iterations; the table shows
//   n/a for the rest.
import { join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { Lab, BUN } from "../test/lab/index.ts";
import { startMesh } from "../test/lab/mesh.ts";
import { ensureBinary, ROOT } from "../test/util/run.ts";

const MIB = Number(process.argv[2] ?? 1024);
const BYTES = MIB * 1024 * 1024;
const FIX = join(ROOT, "test/fixtures");
const NODE = process.env.BENCH_NODE ?? "/usr/bin/node";
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(",")) : undefined;
const want = (part: string) => !ONLY || ONLY.has(part);
const say = (s: string) => process.stderr.write(`bench: ${s}\n`);
const fmt = (x: number | undefined, d = 2) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : "n/a");
const SHAPE_RATE = "200mbit";

function cpuSeconds(pid: number): number {
  let f: string;
  try {
    f = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return NaN; // the process is gone: its figure is left out
  }
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100;
}
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}
/** anonymous (the process's own) and file-backed (clean pages of the executable, reclaimable) parts of RSS */
function rssParts(pid: number): { anon: number; file: number } {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? NaN) / 1024;
  return { anon: kb("RssAnon"), file: kb("RssFile") + kb("RssShmem") };
}
/**
 * echoes / new connections made before each latency measurement and not
 * counted: every process on the path runs warm code, as a long-running agent
 * does. JSC keeps compiling hot paths into higher tiers for thousands of
 * echoes (its compiler threads share the 2 cores): with 200 the echo's p99
 * was 1.2-3.6 ms, with 5,000 0.5-0.6 ms; the cold figure is printed too.
 */
const WARMUP = { rtt: 5000, ttfb: 500 };
/** one-stream transfers, plain and mesh alternating: throughput and CPU per GiB are medians (this machine's speed varies by ±20% within minutes) */
const ROUNDS = 3;
const median = (xs: number[]) => quantile(xs, 0.5);
const quantile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

// Backend edge3 10.10.1.13: iperf3 on 5201, an echo on 9001.
const IPERF = "10.96.0.80";
const ECHO = "10.96.0.81";

const binary = process.env.EDGEMESH_BINARY ?? (await ensureBinary());
const lab = await Lab.create({ name: "benchmesh" });
try {
  const h = lab.hosts;
  const svc = (name: string, ip: string, port: number, target: number) =>
    `- {name: ${name}, namespace: bench, clusterIP: ${ip}, ports: [{name: p, port: ${port}, targetPort: ${target}}], endpoints: [{ip: ${h.edge3.ip}, nodeName: edge3}]}`;
  const mesh = startMesh(lab, {
    binary,
    logLevel: "info",
    proxy: true,
    agents: [
      { name: "edge1", host: "edge1", hints: { edge3: [h.edge3.ip] } },
      { name: "edge3", host: "edge3", hints: { edge1: [h.edge1.ip] } },
    ],
    services: [svc("iperf", IPERF, 5201, 5201), svc("echo", ECHO, 9001, 9001)],
  });
  lab.spawn("edge3", ["iperf3", "-s", "-p", "5201"]);
  lab.spawn("edge3", [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9001", "echo"]);
  mesh.startServer();
  for (const n of mesh.agents.keys()) mesh.startAgent(n);
  await mesh.waitReserved();
  const pid = (n: string) => mesh.agents.get(n)!.proc.pid;
  const agents = ["edge1", "edge3"] as const;

  const json = async <T>(argv: string[], timeoutMs = 300_000): Promise<T> => {
    const r = await lab.exec("edge1", argv, { timeoutMs });
    return JSON.parse(r.stdout.trim().split("\n").pop() || JSON.stringify({ ok: false, error: `no output: ${r.stderr.slice(0, 200)}` })) as T;
  };
  type Xfer = { ok: boolean; mbps: number; bytes: number; error?: string };
  /** iperf3 from edge1 to HOST:5201; reverse = the backend sends. MB/s as received. */
  const iperf = async (host: string, opts: { streams?: number; reverse?: boolean; bytes?: number } = {}): Promise<Xfer> => {
    const argv = ["iperf3", "-c", host, "-p", "5201", "-J", "-n", String(opts.bytes ?? BYTES), "-P", String(opts.streams ?? 1)];
    if (opts.reverse) argv.push("-R");
    const r = await lab.exec("edge1", argv, { timeoutMs: 600_000 });
    try {
      const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bytes: number; seconds: number } } };
      const got = j.end?.sum_received;
      if (j.error || !got) return { ok: false, mbps: NaN, bytes: 0, error: j.error ?? "no summary" };
      return { ok: true, mbps: Math.round(got.bytes / got.seconds / 1e6), bytes: got.bytes };
    } catch {
      return { ok: false, mbps: NaN, bytes: 0, error: `iperf3: ${r.stderr.slice(0, 200) || r.stdout.slice(0, 200)}` };
    }
  };
  type Times = { ok: boolean; p50Us: number; p99Us: number; errors?: number; firstError?: string };
  const latency = (mode: "rtt" | "ttfb", ip: string, port = 9001, n = mode === "rtt" ? 5000 : 500, warm: number = WARMUP[mode]) =>
    json<Times>([NODE, join(FIX, "latency.mjs"), mode, ip, String(port), String(n), String(warm)]);
  const must = <T extends { ok: boolean; error?: string }>(label: string, r: T): T => {
    if (!r.ok) throw new Error(`${label}: ${r.error ?? JSON.stringify(r)}`);
    return r;
  };
  const sampler = () => {
    const peak: Record<string, number> = { edge1: 0, edge3: 0, server: 0 };
    const t = setInterval(() => {
      for (const a of agents) peak[a] = Math.max(peak[a]!, rssMiB(pid(a)));
      peak.server = Math.max(peak.server!, rssMiB(mesh.server.pid));
    }, 50);
    return () => {
      clearInterval(t);
      return peak;
    };
  };

  await Bun.sleep(3000);
  const idle = { edge1: rssMiB(pid("edge1")), edge3: rssMiB(pid("edge3")), server: rssMiB(mesh.server.pid) };
  const idleParts = rssParts(pid("edge1"));
  say(`idle RSS MiB ${JSON.stringify(idle)}`);

  // memory per connection, from idle: the bulk transfers below grow the heap,
  // which would be counted against the connections otherwise
  type Held = { n: number; served: number; errors: Record<string, number>; before: Record<string, number>; peak: Record<string, number>; perConnKiB: Record<string, number> };
  const held: Held[] = [];
  if (want("conns")) {
    // one round first, not measured: the first connections also pay one-time
    // costs (code compiled, pools and tables sized) that a running agent has paid
    await json([BUN, join(FIX, "many-conns.ts"), ECHO, "9001", "1000", "60000", "0"], 90_000);
    await Bun.sleep(5000);
    for (const n of [1000, 10_000]) {
      const before = { edge1: rssMiB(pid("edge1")), edge3: rssMiB(pid("edge3")) };
      const stop = sampler();
      const r = await json<{ served: number; errors: Record<string, number> }>([BUN, join(FIX, "many-conns.ts"), ECHO, "9001", String(n), "150000", "3000"], 200_000);
      const peak = stop();
      const perConnKiB = Object.fromEntries(agents.map((a) => [a, ((peak[a]! - before[a]) * 1024) / n]));
      held.push({ n, served: r.served, errors: r.errors, before, peak, perConnKiB });
      say(`${n} connections: ${r.served} served, per connection ${fmt(perConnKiB.edge1, 1)} / ${fmt(perConnKiB.edge3, 1)} KiB`);
      await Bun.sleep(10_000); // closed connections' memory goes back before the next size
    }
  }

  // warm the path (tunnel connection, JIT) before measuring
  must("warm-up", await iperf(IPERF, { bytes: 64 << 20 }));

  const noXfer: Xfer = { ok: true, mbps: NaN, bytes: 0 };
  const x = { plain1: noXfer, mesh1: noXfer, plain16: noXfer, mesh16: noXfer, plainRev: noXfer, meshRev: noXfer };
  const cpuPerGiB: Record<string, number> = { edge1: NaN, edge3: NaN };
  let ratio1 = NaN;
  let cpuBoth: number[] = [];
  const rssBeforeBulk = rssMiB(pid("edge1"));
  if (want("bulk")) {
    const rounds: Array<{ plain: Xfer; mesh: Xfer; cpu: Record<string, number> }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      const plain = must("plain single", await iperf(h.edge3.ip));
      const cpu0 = Object.fromEntries(agents.map((a) => [a, cpuSeconds(pid(a))]));
      const mesh = must("mesh single", await iperf(IPERF));
      const cpu = Object.fromEntries(agents.map((a) => [a, (cpuSeconds(pid(a)) - cpu0[a]!) / (mesh.bytes / 2 ** 30)]));
      rounds.push({ plain, mesh, cpu });
      say(`single stream, round ${r + 1}: plain ${plain.mbps} MB/s, mesh ${mesh.mbps} MB/s (${fmt(mesh.mbps / plain.mbps)}), CPU s/GiB ${fmt(cpu.edge1)} + ${fmt(cpu.edge3)}`);
    }
    x.plain1 = { ok: true, mbps: median(rounds.map((r) => r.plain.mbps)), bytes: BYTES };
    x.mesh1 = { ok: true, mbps: median(rounds.map((r) => r.mesh.mbps)), bytes: BYTES };
    ratio1 = median(rounds.map((r) => r.mesh.mbps / r.plain.mbps));
    for (const a of agents) cpuPerGiB[a] = median(rounds.map((r) => r.cpu[a]!));
    cpuBoth = rounds.map((r) => r.cpu.edge1! + r.cpu.edge3!);
    x.plainRev = must("plain reverse", await iperf(h.edge3.ip, { reverse: true }));
    x.meshRev = must("mesh reverse", await iperf(IPERF, { reverse: true }));
    say(`single stream, backend sends: plain ${x.plainRev.mbps} MB/s, mesh ${x.meshRev.mbps} MB/s`);
    x.plain16 = must("plain 16", await iperf(h.edge3.ip, { streams: 16 }));
    x.mesh16 = must("mesh 16", await iperf(IPERF, { streams: 16 }));
    say(`16 streams: plain ${x.plain16.mbps} MB/s, mesh ${x.mesh16.mbps} MB/s`);
  }
  const noTimes: Times = { ok: true, p50Us: NaN, p99Us: NaN, errors: 0 };
  let rttPlain = noTimes, rttMesh = noTimes, ttfbPlain = noTimes, ttfbMesh = noTimes, rttCold = noTimes;
  if (want("rtt")) {
    rttCold = must("mesh rtt, 200 echoes of warm-up", await latency("rtt", ECHO, 9001, 5000, 200));
    rttPlain = must("plain rtt", await latency("rtt", h.edge3.ip));
    rttMesh = must("mesh rtt", await latency("rtt", ECHO));
    say(`rtt p50/p99: plain ${rttPlain.p50Us}/${rttPlain.p99Us} µs, mesh ${rttMesh.p50Us}/${rttMesh.p99Us} µs`);
  }
  if (want("ttfb")) {
    ttfbPlain = must("plain ttfb", await latency("ttfb", h.edge3.ip));
    ttfbMesh = must("mesh ttfb", await latency("ttfb", ECHO));
    say(`ttfb p50/p99: plain ${ttfbPlain.p50Us}/${ttfbPlain.p99Us} µs, mesh ${ttfbMesh.p50Us}/${ttfbMesh.p99Us} µs`);
  }
  // peak RSS growth while MiB cross a shaped link: a fast backend behind edge3's
  // slow uplink (iperf3 -R: the backend sends), a fast client behind edge1's
  type Shaped = { label: string; xfer: Xfer; growth: Record<string, number> };
  const shaped: Shaped[] = [];
  if (want("shaped")) {
    const cases = [
      { label: `fast backend behind edge3's ${SHAPE_RATE} uplink`, host: "edge3", reverse: true },
      { label: `fast client behind edge1's ${SHAPE_RATE} uplink`, host: "edge1", reverse: false },
    ] as const;
    for (const c of cases) {
      await lab.execOrThrow(c.host, ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", SHAPE_RATE, "burst", "256kb", "latency", "100ms"]);
      try {
        const base = { edge1: rssMiB(pid("edge1")), edge3: rssMiB(pid("edge3")), server: rssMiB(mesh.server.pid) };
        const stop = sampler();
        const xfer = must(c.label, await iperf(IPERF, { reverse: c.reverse }));
        const peak = stop();
        const growth = Object.fromEntries(agents.map((a) => [a, peak[a]! - base[a]]));
        shaped.push({ label: c.label, xfer, growth });
        say(`${c.label}: ${xfer.mbps} MB/s, peak RSS growth edge1 ${fmt(growth.edge1, 1)} MiB, edge3 ${fmt(growth.edge3, 1)} MiB`);
      } finally {
        await lab.exec(c.host, ["tc", "qdisc", "del", "dev", "eth0", "root"]);
      }
    }
  }
  // two bare relays where the agents are: edge1:40010 → edge3:40011 → echo
  const floor: Array<{ mode: string; rtt: { p50Us: number; p99Us: number }; ttfb: { p50Us: number; p99Us: number } }> = [];
  let relayFloor: { mbps: number; cpu: number[] } | undefined;
  if (want("floor")) {
    for (const [mode, a, b] of [["net", 40010, 40011], ["bun", 40020, 40021]] as const) {
      const r3 = lab.spawn("edge3", [BUN, join(FIX, "bare-relay.ts"), mode, String(b), "127.0.0.1", "9001"]);
      const r1 = lab.spawn("edge1", [BUN, join(FIX, "bare-relay.ts"), mode, String(a), h.edge3.ip, String(b)]);
      // both listening (bun start-up): one connection through them answers
      for (let i = 0; i < 40; i++) {
        const probe = await latency("ttfb", "127.0.0.1", a, 1, 0);
        if (probe.ok) break;
        await Bun.sleep(250);
      }
      const viaRtt = await latency("rtt", "127.0.0.1", a);
      const viaTtfb = await latency("ttfb", "127.0.0.1", a);
      r1.kill("SIGKILL");
      r3.kill("SIGKILL");
      // a reference, not a target: a failed relay run is reported and left out of the table
      if (!viaTtfb.ok) {
        say(`floor (${mode}) left out: ${viaTtfb.errors ?? "?"} of 500 first-byte runs failed (${viaTtfb.firstError ?? "no output"})`);
        continue;
      }
      floor.push({ mode, rtt: viaRtt, ttfb: viaTtfb });
      say(`floor (${mode}): rtt p50 ${viaRtt.p50Us} µs, ttfb p50 ${viaTtfb.p50Us} µs`);
    }
    // the CPU floor: one iperf3 stream through two node:net relays (with
    // backpressure) where the agents are, CPU per GiB of each relay
    const r3 = lab.spawn("edge3", [BUN, join(FIX, "bare-relay.ts"), "net", "40031", "127.0.0.1", "5201"]);
    const r1 = lab.spawn("edge1", [BUN, join(FIX, "bare-relay.ts"), "net", "40030", h.edge3.ip, "40031"]);
    for (let i = 0; i < 40; i++) {
      if ((await lab.exec("edge1", ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/40030"])).code === 0) break;
      await Bun.sleep(250);
    }
    const relayIperf = async (): Promise<Xfer> => {
      const r = await lab.exec("edge1", ["iperf3", "-c", "127.0.0.1", "-p", "40030", "-J", "-n", String(BYTES)], { timeoutMs: 600_000 });
      const got = (JSON.parse(r.stdout || "{}") as { end?: { sum_received?: { bytes: number; seconds: number } } }).end?.sum_received;
      return got ? { ok: true, mbps: Math.round(got.bytes / got.seconds / 1e6), bytes: got.bytes } : { ok: false, mbps: NaN, bytes: 0, error: r.stderr.slice(0, 200) };
    };
    const c0 = [cpuSeconds(r1.pid), cpuSeconds(r3.pid)];
    const via = await relayIperf();
    if (via.ok) {
      relayFloor = { mbps: via.mbps, cpu: [(cpuSeconds(r1.pid) - c0[0]!) / (via.bytes / 2 ** 30), (cpuSeconds(r3.pid) - c0[1]!) / (via.bytes / 2 ** 30)] };
      say(`floor (net) one stream: ${via.mbps} MB/s, relay CPU s/GiB ${fmt(relayFloor.cpu[0])} + ${fmt(relayFloor.cpu[1])}`);
    } else say(`floor (net) one stream left out: ${via.error}`);
    r1.kill("SIGKILL");
    r3.kill("SIGKILL");
  }
  await Bun.sleep(5000);
  const rssAfterBulk = rssMiB(pid("edge1"));

  // ---- control plane: 1,000 services × 2 ports from a static config reload
  type Change = { writeToLive: number; snapshotToLive: number; internal: number; applyMs: number; rules: number };
  let bulk: Change = { writeToLive: NaN, snapshotToLive: NaN, internal: NaN, applyMs: NaN, rules: NaN };
  const changes: Change[] = [];
  let idleCpuPct = NaN;
  let rss1000 = NaN;
  if (want("control")) {
    const cfg = mesh.agents.get("edge1")!.config;
    const base = readFileSync(cfg, "utf8");
    const ipOf = (i: number) => `10.97.${Math.floor(i / 250)}.${(i % 250) + 1}`;
    const many = (n: number) =>
      Array.from({ length: n }, (_, i) => `        - {name: s${String(i).padStart(4, "0")}, namespace: scale, clusterIP: ${ipOf(i)}, ports: [{name: a, port: 80, targetPort: 9001}, {name: b, port: 81, targetPort: 9001}], endpoints: [{ip: ${h.edge3.ip}, nodeName: edge3}]}`);
    const withServices = (n: number) => base.replace("      services:\n", `      services:\n${many(n).join("\n")}\n`);
    /** the timestamp of the last "static metadata reloaded" line for n services */
    const reloadedAt = (n: number): number => {
      const lines = mesh.logs("edge1").split("\n").filter((l) => l.includes("static metadata reloaded") && l.includes(`services=${n} `));
      const last = lines.at(-1);
      return last ? Date.parse(last.slice(0, 24)) : NaN;
    };
    const changeTo = async (n: number, probeIp: string): Promise<Change> => {
      const probe = json<{ ok: boolean; at: number }>([BUN, join(FIX, "probe-connect.ts"), probeIp, "81", "20000"], 30_000);
      await Bun.sleep(400); // the probe is up (bun start) before the change
      const wrote = Date.now();
      writeFileSync(cfg, withServices(n));
      const p = await probe;
      if (!p.ok) throw new Error(`service ${probeIp} never came alive`);
      const st = (await mesh.status<{ proxier: { rules: number; snapshotToLiveMs: number; lastApplyMs: number } }>("edge1")).proxier;
      return { writeToLive: p.at - wrote, snapshotToLive: p.at - reloadedAt(n + 2), internal: st.snapshotToLiveMs, applyMs: st.lastApplyMs, rules: st.rules };
    };
    bulk = await changeTo(1000, ipOf(999));
    say(`1,000 services: snapshot → last rule live ${bulk.snapshotToLive} ms (${bulk.rules} rules)`);
    for (let k = 1; k <= 20; k++) changes.push(await changeTo(1000 + k, ipOf(999 + k)));
    say(`one change: snapshot → live p50 ${quantile(changes.map((c) => c.snapshotToLive), 0.5)} ms`);
    await Bun.sleep(3000);
    const idleCpu0 = cpuSeconds(pid("edge1"));
    const t0 = performance.now();
    await Bun.sleep(30_000);
    idleCpuPct = ((cpuSeconds(pid("edge1")) - idleCpu0) / ((performance.now() - t0) / 1000)) * 100;
    rss1000 = rssMiB(pid("edge1"));
  }

  const snapLive = changes.map((c) => c.snapshotToLive);
  const internal = changes.map((c) => c.internal);
  const out: string[] = [];
  const added = (m: number, p: number) => `${m - p >= 0 ? "+" : ""}${m - p} µs`;
  const perConn = (n: number) => held.find((c) => c.n === n);
  out.push(
    `path: app on edge1 → ClusterIP (iptables DNAT) → edge1 agent → tunnel (direct, LAN) → edge3 agent → backend on edge3; baseline: the same client to the backend's address (throughput: iperf3; latency: Node.js). ${MIB} MiB per transfer; all processes share the machine's cores.`,
    "",
    "| measure | plain | mesh | ratio / added |",
    "|---|---|---|---|",
    `| one stream (iperf3, median of ${ROUNDS} alternating rounds) | ${x.plain1.mbps} MB/s | ${x.mesh1.mbps} MB/s | ${fmt(ratio1)} |`,
    `| one stream, backend sends (iperf3 -R) | ${x.plainRev.mbps} MB/s | ${x.meshRev.mbps} MB/s | ${fmt(x.meshRev.mbps / x.plainRev.mbps)} |`,
    `| 16 streams (iperf3 -P 16) | ${x.plain16.mbps} MB/s | ${x.mesh16.mbps} MB/s | ${fmt(x.mesh16.mbps / x.plain16.mbps)} |`,
    `| 64-byte echo RTT p50 (5,000 after ${WARMUP.rtt}) | ${rttPlain.p50Us} µs | ${rttMesh.p50Us} µs | ${added(rttMesh.p50Us, rttPlain.p50Us)} |`,
    `| 64-byte echo RTT p99 (5,000 after ${WARMUP.rtt}) | ${rttPlain.p99Us} µs | ${rttMesh.p99Us} µs | ${added(rttMesh.p99Us, rttPlain.p99Us)} |`,
    `| 64-byte echo RTT p50 / p99, 5,000 after only 200 (agents still compiling) | ${rttPlain.p50Us} / ${rttPlain.p99Us} µs | ${rttCold.p50Us} / ${rttCold.p99Us} µs | ${added(rttCold.p50Us, rttPlain.p50Us)} / ${added(rttCold.p99Us, rttPlain.p99Us)} |`,
    `| new connection, first byte p50 (500 after ${WARMUP.ttfb}) | ${ttfbPlain.p50Us} µs | ${ttfbMesh.p50Us} µs | ${added(ttfbMesh.p50Us, ttfbPlain.p50Us)} |`,
    `| new connection, first byte p99 (500 after ${WARMUP.ttfb}) | ${ttfbPlain.p99Us} µs | ${ttfbMesh.p99Us} µs | ${added(ttfbMesh.p99Us, ttfbPlain.p99Us)} |`,
    ...floor.flatMap((f) => [
      `| 64-byte echo RTT p50 / p99, two bare relays (${f.mode === "net" ? "node:net" : "Bun sockets"}) instead of the agents | ${rttPlain.p50Us} / ${rttPlain.p99Us} µs | ${f.rtt.p50Us} / ${f.rtt.p99Us} µs | ${added(f.rtt.p50Us, rttPlain.p50Us)} / ${added(f.rtt.p99Us, rttPlain.p99Us)} |`,
      `| new connection, first byte p50, two bare relays (${f.mode === "net" ? "node:net" : "Bun sockets"}) | ${ttfbPlain.p50Us} µs | ${f.ttfb.p50Us} µs | ${added(f.ttfb.p50Us, ttfbPlain.p50Us)} |`,
    ]),
    ...(relayFloor ? [`| one stream (iperf3), two bare node:net relays instead of the agents | ${x.plain1.mbps} MB/s | ${relayFloor.mbps} MB/s | ${fmt(relayFloor.mbps / x.plain1.mbps)} |`] : []),
    "",
    `agent CPU-seconds per GiB, one stream (median of ${ROUNDS}): edge1 ${fmt(cpuPerGiB.edge1)} + edge3 ${fmt(cpuPerGiB.edge3)}; both agents per round: ${cpuBoth.map((c) => fmt(c)).join(", ")}${relayFloor ? `; two bare relays in their place: ${fmt(relayFloor.cpu[0])} + ${fmt(relayFloor.cpu[1])}` : ""}`,
    `idle RSS: edge1 ${fmt(idle.edge1, 1)} MiB (anonymous ${fmt(idleParts.anon, 1)} + file-backed ${fmt(idleParts.file, 1)} of the executable's pages), edge3 ${fmt(idle.edge3, 1)} MiB, server ${fmt(idle.server, 1)} MiB`,
    ...shaped.map((c) => `peak RSS growth, ${MIB} MiB, ${c.label} (${c.xfer.mbps} MB/s): edge1 +${fmt(c.growth.edge1, 1)} MiB, edge3 +${fmt(c.growth.edge3, 1)} MiB`),
    ...[1000, 10_000].map((n) => {
      const c = perConn(n);
      if (!c) return `memory per connection, ${n} open: n/a`;
      const err = Object.keys(c.errors).length ? `, errors ${JSON.stringify(c.errors)}` : "";
      return `memory per connection, ${n} open (${c.served}/${n} served${err}): edge1 ${fmt(c.perConnKiB.edge1, 1)} KiB (${fmt(c.before.edge1, 1)} → ${fmt(c.peak.edge1, 1)} MiB), edge3 ${fmt(c.perConnKiB.edge3, 1)} KiB (${fmt(c.before.edge3, 1)} → ${fmt(c.peak.edge3, 1)} MiB)`;
    }),
    `edge1 RSS around the throughput tests: ${fmt(rssBeforeBulk, 1)} MiB before, ${fmt(rssAfterBulk, 1)} MiB 5 s after`,
    "",
    `control plane (static config reload on edge1; "snapshot" = the agent's "static metadata reloaded" log line, "live" = an echo through the new ClusterIP from edge1):`,
    `- 1,000 services × 2 ports (2,000 ports, ${bulk.rules} rules): snapshot → last service live ${bulk.snapshotToLive} ms; file write → live ${bulk.writeToLive} ms (includes the 200 ms reload debounce); iptables-restore ${bulk.applyMs} ms`,
    `- one change (a service added, ×20, on top of 1,000): snapshot → live p50 ${quantile(snapLive, 0.5)} ms, p99 ${quantile(snapLive, 0.99)} ms (agent's own count: p50 ${fmt(quantile(internal, 0.5), 1)} ms, p99 ${fmt(quantile(internal, 0.99), 1)} ms); file write → live p50 ${quantile(changes.map((c) => c.writeToLive), 0.5)} ms`,
    `- agent idle CPU with 1,003+20 services: ${fmt(idleCpuPct)}% of a core over 30 s; RSS ${fmt(rss1000, 1)} MiB`,
  );
  console.log(out.join("\n"));
} finally {
  await lab.destroy();
}
