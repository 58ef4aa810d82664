// The full application path in the NAT lab (needs root): an app on edge1
// connects to a ClusterIP; iptables sends it to edge1's agent, which carries
// it through the tunnel (direct, LAN) to edge3's agent, which dials the
// backend. Every figure is put against the same client talking to the
// backend's own address, measured in the same run:
//   single-stream and 16-stream MB/s, 64-byte echo RTT p50/p99, time to first
//   byte of 500 new connections, agent CPU-seconds per GiB, agent RSS idle,
//   with 1,000 connections open and after they close;
// the floor: the same RTT and first byte through two bare relay processes
// (test/fixtures/bare-relay.ts) where the agents are, i.e. what two extra
// userspace hops cost on this machine before any encryption or muxing;
// then the control plane: 1,000 services × 2 ports programmed, 20 single
// changes, idle CPU with 1,000 services.
// Usage: bun scripts/bench-mesh.ts [MiB per transfer, default 256]
//   BENCH_ONLY=rtt,ttfb (any of conns, bulk, rtt, ttfb, floor, control) runs only
//   those parts, for quick iterations; the table shows n/a for the rest.
import { join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { Lab, BUN } from "../test/lab/index.ts";
import { startMesh } from "../test/lab/mesh.ts";
import { ensureBinary, ROOT } from "../test/util/run.ts";

const MIB = Number(process.argv[2] ?? 256);
const BYTES = MIB * 1024 * 1024;
const FIX = join(ROOT, "test/fixtures");
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(",")) : undefined;
const want = (part: string) => !ONLY || ONLY.has(part);
const say = (s: string) => process.stderr.write(`bench: ${s}\n`);
const fmt = (x: number | undefined, d = 2) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : "n/a");

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
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
/** new connections made before each first-byte measurement and not counted: every process on the path runs warm (JIT-compiled) code, as a long-running agent does */
const TTFB_WARMUP = 200;
const quantile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

// Backend edge3 10.10.1.13: a digest sink on 9000 and an echo on 9001.
const BULK = "10.96.0.80";
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
    services: [svc("bulk", BULK, 9000, 9000), svc("echo", ECHO, 9001, 9001)],
  });
  lab.spawn("edge3", [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9000", "digest"]);
  lab.spawn("edge3", [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9001", "echo"]);
  mesh.startServer();
  for (const n of mesh.agents.keys()) mesh.startAgent(n);
  await mesh.waitReserved();
  const pid = (n: string) => mesh.agents.get(n)!.proc.pid;
  const agentsCpu = () => cpuSeconds(pid("edge1")) + cpuSeconds(pid("edge3"));

  const json = async <T>(argv: string[], timeoutMs = 300_000): Promise<T> => {
    const r = await lab.exec("edge1", [BUN, ...argv], { timeoutMs });
    return JSON.parse(r.stdout.trim().split("\n").pop() || `{"ok":false,"error":"no output: ${r.stderr.slice(0, 200)}"}`) as T;
  };
  type Xfer = { ok: boolean; mbps: number; error?: string };
  const single = (ip: string) => json<Xfer>([join(FIX, "socks-client.ts"), "direct", ip, "9000", "digest", String(BYTES)]);
  const parallel = (ip: string) => json<Xfer>([join(FIX, "parallel-digest.ts"), ip, "9000", "16", String(BYTES)]);
  const rtt = (ip: string) => json<{ p50Us: number; p99Us: number }>([join(FIX, "socks-client.ts"), "direct", ip, "9001", "rtt", "2000"]);
  const ttfb = (ip: string) => json<{ ok: boolean; p50Us: number; p99Us: number; errors: number }>([join(FIX, "ttfb.ts"), ip, "9001", "500", String(TTFB_WARMUP)]);
  const must = <T extends { ok: boolean; error?: string }>(label: string, r: T): T => {
    if (!r.ok) throw new Error(`${label}: ${r.error ?? JSON.stringify(r)}`);
    return r;
  };

  await Bun.sleep(2000);
  const idle = { edge1: rssMiB(pid("edge1")), edge3: rssMiB(pid("edge3")), server: rssMiB(mesh.server.pid) };
  const idleParts = rssParts(pid("edge1"));
  say(`idle RSS MiB ${JSON.stringify(idle)}`);
  // 1,000 connections first, from idle: the bulk transfers below grow the
  // heap, which would be counted against the connections otherwise
  const before1k = rssMiB(pid("edge1"));
  let peak1k = { edge1: NaN, edge3: NaN };
  let held: { opened: number; served: number; errors: Record<string, number> } = { opened: 0, served: 0, errors: {} };
  const after: Array<[number, number]> = [];
  if (want("conns")) {
    peak1k = { edge1: 0, edge3: 0 };
    const sampler = setInterval(() => {
      peak1k = { edge1: Math.max(peak1k.edge1, rssMiB(pid("edge1"))), edge3: Math.max(peak1k.edge3, rssMiB(pid("edge3"))) };
    }, 100);
    held = await json([join(FIX, "many-conns.ts"), ECHO, "9001", "1000", "60000", "3000"], 90_000);
    clearInterval(sampler);
    const closedAt = performance.now();
    for (let s = 0; s < 30; s++) {
      await Bun.sleep(1000);
      after.push([Math.round((performance.now() - closedAt) / 1000), rssMiB(pid("edge1"))]);
    }
    say(`1,000 connections: ${held.served} served, peak edge1 ${fmt(peak1k.edge1, 1)} MiB`);
  }
  const nearIdle = after.find(([, r]) => r <= before1k + 10);

  // warm the path (tunnel connection, JIT) before measuring
  must("warm-up", await json<Xfer>([join(FIX, "socks-client.ts"), "direct", BULK, "9000", "digest", String(8 << 20)]));

  const noXfer: Xfer = { ok: true, mbps: NaN };
  const noTimes = { ok: true, p50Us: NaN, p99Us: NaN, errors: 0 };
  let plain1 = noXfer, mesh1 = noXfer, plain16 = noXfer, mesh16 = noXfer;
  let cpuPerGiB = NaN;
  const rssBeforeBulk = rssMiB(pid("edge1"));
  if (want("bulk")) {
    plain1 = must("plain single", await single(h.edge3.ip));
    const cpu0 = agentsCpu();
    mesh1 = must("mesh single", await single(BULK));
    cpuPerGiB = (agentsCpu() - cpu0) / (BYTES / 2 ** 30);
    say(`single stream: plain ${plain1.mbps} MB/s, mesh ${mesh1.mbps} MB/s`);
    plain16 = must("plain 16", await parallel(h.edge3.ip));
    mesh16 = must("mesh 16", await parallel(BULK));
    say(`16 streams: plain ${plain16.mbps} MB/s, mesh ${mesh16.mbps} MB/s`);
  }
  let rttPlain: { p50Us: number; p99Us: number } = noTimes, rttMesh = rttPlain, ttfbPlain = noTimes, ttfbMesh = noTimes;
  if (want("rtt")) {
    rttPlain = await rtt(h.edge3.ip);
    rttMesh = await rtt(ECHO);
    say(`rtt p50: plain ${rttPlain.p50Us} µs, mesh ${rttMesh.p50Us} µs`);
  }
  if (want("ttfb")) {
    ttfbPlain = must("plain ttfb", await ttfb(h.edge3.ip));
    ttfbMesh = must("mesh ttfb", await ttfb(ECHO));
    say(`ttfb p50: plain ${ttfbPlain.p50Us} µs, mesh ${ttfbMesh.p50Us} µs`);
  }
  // two bare relays where the agents are: edge1:40010 → edge3:40011 → echo
  const floor: Array<{ mode: string; rtt: { p50Us: number; p99Us: number }; ttfb: { p50Us: number; p99Us: number } }> = [];
  if (want("floor")) {
    for (const [mode, a, b] of [["net", 40010, 40011], ["bun", 40020, 40021]] as const) {
      const r3 = lab.spawn("edge3", [BUN, join(FIX, "bare-relay.ts"), mode, String(b), "127.0.0.1", "9001"]);
      const r1 = lab.spawn("edge1", [BUN, join(FIX, "bare-relay.ts"), mode, String(a), h.edge3.ip, String(b)]);
      // both listening (bun start-up): one connection through them answers
      for (let i = 0; i < 40; i++) {
        const probe = await json<{ ok: boolean }>([join(FIX, "ttfb.ts"), "127.0.0.1", String(a), "1"]);
        if (probe.ok) break;
        await Bun.sleep(250);
      }
      const viaRtt = await json<{ p50Us: number; p99Us: number }>([join(FIX, "socks-client.ts"), "direct", "127.0.0.1", String(a), "rtt", "2000"]);
      const viaTtfb = await json<{ ok: boolean; p50Us: number; p99Us: number; errors?: number; firstError?: string }>([join(FIX, "ttfb.ts"), "127.0.0.1", String(a), "500", String(TTFB_WARMUP)]);
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
      const probe = json<{ ok: boolean; at: number }>([join(FIX, "probe-connect.ts"), probeIp, "81", "20000"], 30_000);
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
  out.push(
    `path: app on edge1 → ClusterIP (iptables DNAT) → edge1 agent → tunnel (direct, LAN) → edge3 agent → backend on edge3; baseline: the same client to the backend's address. ${MIB} MiB per transfer; all processes share the machine's cores.`,
    "",
    "| measure | plain | mesh | ratio / added |",
    "|---|---|---|---|",
    `| single stream | ${plain1.mbps} MB/s | ${mesh1.mbps} MB/s | ${fmt(mesh1.mbps / plain1.mbps)} |`,
    `| 16 parallel streams | ${plain16.mbps} MB/s | ${mesh16.mbps} MB/s | ${fmt(mesh16.mbps / plain16.mbps)} |`,
    `| 64-byte echo RTT p50 | ${rttPlain.p50Us} µs | ${rttMesh.p50Us} µs | +${rttMesh.p50Us - rttPlain.p50Us} µs |`,
    `| 64-byte echo RTT p99 | ${rttPlain.p99Us} µs | ${rttMesh.p99Us} µs | +${rttMesh.p99Us - rttPlain.p99Us} µs |`,
    `| new connection, first byte p50 (500, after 200 unmeasured) | ${ttfbPlain.p50Us} µs | ${ttfbMesh.p50Us} µs | +${ttfbMesh.p50Us - ttfbPlain.p50Us} µs |`,
    `| new connection, first byte p99 (500, after 200 unmeasured) | ${ttfbPlain.p99Us} µs | ${ttfbMesh.p99Us} µs | +${ttfbMesh.p99Us - ttfbPlain.p99Us} µs |`,
    ...floor.flatMap((f) => [
      `| 64-byte echo RTT p50, two bare relays (${f.mode === "net" ? "node:net" : "Bun sockets"}) instead of the agents | ${rttPlain.p50Us} µs | ${f.rtt.p50Us} µs | +${f.rtt.p50Us - rttPlain.p50Us} µs |`,
      `| new connection, first byte p50, two bare relays (${f.mode === "net" ? "node:net" : "Bun sockets"}) | ${ttfbPlain.p50Us} µs | ${f.ttfb.p50Us} µs | +${f.ttfb.p50Us - ttfbPlain.p50Us} µs |`,
    ]),
    "",
    `agent CPU-seconds per GiB (edge1 + edge3, single stream): ${fmt(cpuPerGiB)}`,
    `agent RSS: idle edge1 ${fmt(idle.edge1, 1)} MiB (anonymous ${fmt(idleParts.anon, 1)} MiB + file-backed ${fmt(idleParts.file, 1)} MiB of the executable's pages), edge3 ${fmt(idle.edge3, 1)} MiB; with 1,000 connections open (${held.served}/1000 served${Object.keys(held.errors).length ? `, errors ${JSON.stringify(held.errors)}` : ""}) peak edge1 ${fmt(peak1k.edge1, 1)} MiB, edge3 ${fmt(peak1k.edge3, 1)} MiB; edge1 before ${fmt(before1k, 1)} MiB, after closing: ${after
      .filter(([s]) => [1, 5, 10, 20, 30].includes(s))
      .map(([s, r]) => `${s} s ${fmt(r, 1)}`)
      .join(", ")} MiB${nearIdle ? ` (within 10 MiB of before after ${nearIdle[0]} s)` : " (not back within 10 MiB in 30 s)"}`,
    `edge1 RSS around the throughput tests (${MIB} MiB × 2 transfers, then RTT and first-byte runs): ${fmt(rssBeforeBulk, 1)} MiB before, ${fmt(rssAfterBulk, 1)} MiB 5 s after`,
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
