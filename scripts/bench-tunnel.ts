// Tunnel benchmark in the NAT lab (needs root): one stream through the
// tunnel edge1→edge3 (direct, LAN) and edge1→edge2 (relayed through the
// server), each against a plain TCP transfer between the same namespaces in
// the same run; 64-byte echo RTT; time to first byte of a new proxied
// connection; agent CPU per GiB; agent RSS idle and under load. Last, the
// NATs stop randomising ports and edge1/edge2 restart, so they punch a hole:
// edge1→edge2 direct through both NATs, against plain TCP edge1→cloud.
// Usage: bun scripts/bench-tunnel.ts [MiB per transfer, default 256]
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { Lab, BUN } from "../test/lab/index.ts";
import { startMesh, SOCKS } from "../test/lab/mesh.ts";
import { ensureBinary, ROOT } from "../test/util/run.ts";

const MIB = Number(process.argv[2] ?? 256);
const PNET = process.argv[3] !== "--no-pnet";
const BYTES = MIB * 1024 * 1024;
const FIX = join(ROOT, "test/fixtures");
const say = (s: string) => process.stderr.write(`bench: ${s}\n`);

interface Res {
  ok: boolean;
  mbps?: number;
  ms?: number;
  ttfbMs?: number;
  p50Us?: number;
  p99Us?: number;
  error?: string;
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(rest[11]) + Number(rest[12]);
  return ticks / 100;
}
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

const binary = await ensureBinary();
const lab = await Lab.create({ name: "bench" });
// port-randomising NATs: no hole punching, so edge1 → edge2 stays on the relay being measured
await lab.setNatMapping("nat1", "random");
await lab.setNatMapping("nat2", "random");
try {
  const h = lab.hosts;
  const mesh = startMesh(lab, {
    binary,
    logLevel: "warn",
    privateNetwork: PNET,
    agents: [
      { name: "edge1", host: "edge1", hints: { edge3: [h.edge3.ip], edge2: [h.edge2.ip] } },
      { name: "edge3", host: "edge3", hints: { edge1: [h.edge1.ip] } },
      { name: "edge2", host: "edge2", hints: { edge1: [h.edge1.ip] } },
    ],
  });
  for (const host of ["edge2", "edge3", "cloud"] as const) {
    lab.spawn(host, [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9000", "digest"]);
    lab.spawn(host, [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9001", "echo"]);
  }
  mesh.startServer();
  for (const n of mesh.agents.keys()) mesh.startAgent(n);
  await mesh.waitReserved();
  const pid = (n: string) => mesh.agents.get(n)!.proc.pid;
  await Bun.sleep(1000);
  const idle = { edge1: rssMiB(pid("edge1")), edge3: rssMiB(pid("edge3")), server: rssMiB(mesh.server.pid) };
  say(`idle RSS MiB: ${JSON.stringify(idle)}`);

  const client = async (host: string, proxy: string, target: string, port: number, mode: string, n: number): Promise<Res> => {
    const r = await lab.exec(host, [BUN, join(FIX, "socks-client.ts"), proxy, target, String(port), mode, String(n)], { timeoutMs: 300_000 });
    return JSON.parse(r.stdout.trim().split("\n").pop() || `{"ok":false,"error":"no output"}`) as Res;
  };
  // warm the paths (connections, JIT) before measuring
  await client("edge1", SOCKS, "edge3", 9000, "digest", 8 << 20);
  await client("edge1", SOCKS, "edge2", 9000, "digest", 8 << 20);

  const measured = async (label: string, f: () => Promise<Res>, agents: string[]) => {
    const before = agents.map((a) => cpuSeconds(a === "server" ? mesh.server.pid : pid(a)));
    let peak = 0;
    const sampler = setInterval(() => {
      for (const a of agents) peak = Math.max(peak, rssMiB(a === "server" ? mesh.server.pid : pid(a)));
    }, 200);
    const r = await f();
    clearInterval(sampler);
    const cpu = agents.map((a, i) => cpuSeconds(a === "server" ? mesh.server.pid : pid(a)) - before[i]!);
    if (!r.ok) throw new Error(`${label}: ${r.error}`);
    say(`${label}: ${r.mbps} MB/s`);
    return { ...r, cpuPerGiB: cpu.map((c) => c / (BYTES / 2 ** 30)), peakRss: peak };
  };

  const plainLan = await measured("plain TCP edge1→edge3", () => client("edge1", "direct", h.edge3.ip, 9000, "digest", BYTES), []);
  const tunDirect = await measured("tunnel edge1→edge3 (direct)", () => client("edge1", SOCKS, "edge3", 9000, "digest", BYTES), ["edge1", "edge3"]);
  const plainWan = await measured("plain TCP edge1→cloud (via NAT)", () => client("edge1", "direct", h.cloud.ip, 9000, "digest", BYTES), []);
  const tunRelay = await measured("tunnel edge1→edge2 (relayed)", () => client("edge1", SOCKS, "edge2", 9000, "digest", BYTES), ["edge1", "edge2", "server"]);
  const path = (await mesh.status<{ peers: Array<{ nodeName: string; path: string }> }>("edge1")).peers;
  say(`edge1 paths: ${path.map((p) => `${p.nodeName}=${p.path}`).join(" ")}`);

  const rttPlain = await client("edge1", "direct", h.edge3.ip, 9001, "rtt", 2000);
  const rttDirect = await client("edge1", SOCKS, "edge3", 9001, "rtt", 2000);
  const rttRelay = await client("edge1", SOCKS, "edge2", 9001, "rtt", 2000);

  const ttfb: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await client("edge1", SOCKS, "edge3", 9001, "echo", 1);
    if (r.ok && r.ms !== undefined) ttfb.push(r.ms);
  }
  ttfb.sort((a, b) => a - b);
  const ttfbPlain: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await client("edge1", "direct", h.edge3.ip, 9001, "echo", 1);
    if (r.ok && r.ms !== undefined) ttfbPlain.push(r.ms);
  }
  ttfbPlain.sort((a, b) => a - b);
  const med = (xs: number[]) => xs[Math.floor(xs.length / 2)] ?? NaN;

  // hole punching: port-preserving NATs, fresh agents on both sides
  await lab.setNatMapping("nat1", "preserve");
  await lab.setNatMapping("nat2", "preserve");
  for (const n of ["edge1", "edge2"]) await mesh.agents.get(n)!.proc.stop(5000);
  for (const n of ["edge1", "edge2"]) mesh.startAgent(n);
  await mesh.waitReserved(["edge1", "edge2"]);
  await client("edge1", SOCKS, "edge2", 9000, "digest", 8 << 20);
  const until = Date.now() + 10_000;
  let punchedPath = "";
  while (Date.now() < until) {
    punchedPath = (await mesh.status<{ peers: Array<{ nodeName: string; path: string }> }>("edge1")).peers.find((p) => p.nodeName === "edge2")?.path ?? "";
    if (punchedPath === "direct") break;
    await Bun.sleep(100);
  }
  if (punchedPath !== "direct") throw new Error(`edge1 → edge2 not direct after hole punching (${punchedPath})`);
  const tunPunched = await measured("tunnel edge1→edge2 (hole-punched)", () => client("edge1", SOCKS, "edge2", 9000, "digest", BYTES), ["edge1", "edge2"]);
  const rttPunched = await client("edge1", SOCKS, "edge2", 9001, "rtt", 2000);

  const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
  const rows = [
    ["plain TCP edge1→edge3 (LAN)", `${plainLan.mbps} MB/s`, "1.00 (baseline)"],
    ["tunnel edge1→edge3 (direct)", `${tunDirect.mbps} MB/s`, fmt(tunDirect.mbps! / plainLan.mbps!)],
    ["plain TCP edge1→cloud (NAT)", `${plainWan.mbps} MB/s`, "1.00 (baseline)"],
    ["tunnel edge1→edge2 (relayed)", `${tunRelay.mbps} MB/s`, `${fmt(tunRelay.mbps! / plainWan.mbps!)} of plain, ${fmt(tunRelay.mbps! / tunDirect.mbps!)} of direct tunnel`],
    ["tunnel edge1→edge2 (hole-punched, both behind NAT)", `${tunPunched.mbps} MB/s`, `${fmt(tunPunched.mbps! / plainWan.mbps!)} of plain edge1→cloud`],
  ];
  const out: string[] = [];
  out.push(`pnet: ${PNET ? "on" : "off"}; transfer: ${MIB} MiB, one stream; sender/receiver/sink are bun processes in the lab namespaces (2 cores shared by all)`);
  out.push("", "| path | throughput | ratio |", "|---|---|---|", ...rows.map((r) => `| ${r.join(" | ")} |`));
  out.push(
    "",
    "| 64-byte echo RTT | p50 | p99 |",
    "|---|---|---|",
    `| plain TCP edge1→edge3 | ${rttPlain.p50Us} µs | ${rttPlain.p99Us} µs |`,
    `| tunnel edge1→edge3 (direct) | ${rttDirect.p50Us} µs (+${(rttDirect.p50Us ?? 0) - (rttPlain.p50Us ?? 0)} µs) | ${rttDirect.p99Us} µs |`,
    `| tunnel edge1→edge2 (relayed) | ${rttRelay.p50Us} µs | ${rttRelay.p99Us} µs |`,
    `| tunnel edge1→edge2 (hole-punched) | ${rttPunched.p50Us} µs | ${rttPunched.p99Us} µs |`,
  );
  out.push(
    "",
    `time to first byte of a new proxied connection (SOCKS connect + first echo, edge1→edge3, median of 20): ${fmt(med(ttfb), 1)} ms (plain TCP connect + echo: ${fmt(med(ttfbPlain), 1)} ms)`,
    `agent CPU-seconds per GiB: direct sender ${fmt(tunDirect.cpuPerGiB[0]!)} + receiver ${fmt(tunDirect.cpuPerGiB[1]!)}; relayed sender ${fmt(tunRelay.cpuPerGiB[0]!)} + receiver ${fmt(tunRelay.cpuPerGiB[1]!)} + server ${fmt(tunRelay.cpuPerGiB[2]!)}`,
    `agent RSS: idle edge1 ${fmt(idle.edge1, 1)} MiB, edge3 ${fmt(idle.edge3, 1)} MiB, server ${fmt(idle.server, 1)} MiB; peak under load ${fmt(Math.max(tunDirect.peakRss, tunRelay.peakRss), 1)} MiB`,
  );
  console.log(out.join("\n"));
} finally {
  await lab.destroy();
}
