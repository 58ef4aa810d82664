// DNS benchmark: dnsperf (Debian package `dnsperf`) against the compiled
// agent's resolver on loopback. Two query sets: cluster names (1,000 services
// from the static source) and forwarded names that are already in the cache
// (a fake upstream in its own process answers the warm-up round only). Each
// at 1 and 100 outstanding queries. Reports QPS, latency p50/p99 (from
// dnsperf -v, one line per reply) and the agent's CPU in cores over the run.
// At 1 outstanding, dnsperf's sender paces itself (34 QPS against a bare UDP
// echo server on this machine, whatever the server), so that case uses a
// sequential client in this script: send, wait for the reply, repeat.
// Baseline in the same run: the same queries against the fake upstream
// itself (a minimal dns-packet responder, no cache, no zone).
// Usage: bun scripts/bench-dns.ts [seconds per run, default 10]
import { join } from "node:path";
import { readFileSync } from "node:fs";
import dnsPacket from "dns-packet";
import { ensureBinary, freePort, tempConfigDir, until, BUN, ROOT } from "../test/util/run.ts";

const SECONDS = Number(process.argv[2] ?? 10);
const SERVICES = 1000;
const say = (s: string) => process.stderr.write(`bench-dns: ${s}\n`);

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100;
}
const quantile = (xs: Float64Array, p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

interface Run { qps: number; p50ms: number; p99ms: number; lost: number; cores?: number }

/** one dnsperf run; latencies come from its verbose per-reply lines ("> NOERROR name A 0.000123") */
async function dnsperf(port: number, file: string, outstanding: number, pid?: number): Promise<Run> {
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const t0 = performance.now();
  const p = Bun.spawn(["dnsperf", "-s", "127.0.0.1", "-p", String(port), "-d", file, "-l", String(SECONDS), "-q", String(outstanding), "-c", "1", "-T", "1", "-v"], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const wall = (performance.now() - t0) / 1000;
  const cores = pid ? (cpuSeconds(pid) - cpu0) / wall : undefined;
  const lat: number[] = [];
  for (const line of out.split("\n")) {
    if (!line.startsWith("> ")) continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) lat.push(v * 1000);
  }
  const sorted = Float64Array.from(lat).sort();
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  if (!Number.isFinite(qps)) throw new Error(`dnsperf printed no QPS:\n${out.slice(-2000)}`);
  return { qps, p50ms: quantile(sorted, 0.5), p99ms: quantile(sorted, 0.99), lost, cores };
}

/** one query at a time over UDP for SECONDS: the 1-outstanding case */
async function sequential(port: number, names: string[], pid?: number): Promise<Run> {
  const packets = names.map((n, i) => dnsPacket.encode({ type: "query", id: i & 0xffff, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: n, type: "A", class: "IN" }] }));
  let wake: (() => void) | undefined;
  const sock = await Bun.udpSocket({ hostname: "127.0.0.1", socket: { data: () => wake?.() } });
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  const lat: number[] = [];
  let lost = 0;
  for (let i = 0; performance.now() < end; i++) {
    const s = performance.now();
    const got = new Promise<boolean>((res) => {
      wake = () => res(true);
      setTimeout(() => res(false), 1000);
    });
    sock.send(packets[i % packets.length]!, port, "127.0.0.1");
    if (await got) lat.push(performance.now() - s);
    else lost++;
  }
  const wall = (performance.now() - t0) / 1000;
  const cores = pid ? (cpuSeconds(pid) - cpu0) / wall : undefined;
  sock.close();
  const sorted = Float64Array.from(lat).sort();
  return { qps: lat.length / wall, p50ms: quantile(sorted, 0.5), p99ms: quantile(sorted, 0.99), lost, cores };
}

const binary = await ensureBinary();
const t = tempConfigDir();
const services = Array.from({ length: SERVICES }, (_, i) =>
  `        - {name: svc${i}, namespace: bench, clusterIP: 10.96.${i >> 8}.${i & 255}, ports: [{name: http, port: 80, targetPort: 8080}], endpoints: [{ip: 10.1.${i >> 8}.${i & 255}, nodeName: edge2}]}`,
).join("\n");
const clusterNames = Array.from({ length: SERVICES }, (_, i) => `svc${i}.bench.svc.cluster.local`);
const forwardNames = Array.from({ length: SERVICES }, (_, i) => `host${i}.example.test`);
const clusterFile = t.write("cluster.txt", clusterNames.map((n) => `${n} A`).join("\n") + "\n");
const forwardFile = t.write("forward.txt", forwardNames.map((n) => `${n} A`).join("\n") + "\n");

const upstreamPort = freePort();
const upstream = Bun.spawn([BUN, join(ROOT, "test/fixtures/dns-upstream.ts"), "127.0.0.1", String(upstreamPort), "198.51.100.7", "--ttl", "3600"], { stdout: "pipe", stderr: "inherit" });
const dnsPort = freePort();
const admin = `127.0.0.1:${freePort()}`;
const cfg = t.write(
  "agent.yaml",
  `nodeName: edge1
${t.trust("edge1")}
psk: psk
logLevel: warn
adminListen: ${admin}
agent:
  metadata:
    source: static
    static:
      services:
${services}
  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}
  proxy: {enable: false}
  dns: {listen: "127.0.0.1:${dnsPort}", upstreamServers: ["127.0.0.1:${upstreamPort}"], cacheTTL: 3600}
`,
);
const agent = Bun.spawn([binary, "agent", "--config", cfg], { stdout: "ignore", stderr: "inherit" });
try {
  // the upstream prints "listening" then one line per query: drain it so it never blocks
  const reader = upstream.stdout.getReader();
  void (async () => { while (!(await reader.read()).done); })();
  let exited = false;
  void agent.exited.then(() => (exited = true));
  await until(async () => {
    if (exited) throw new Error("the agent exited (its error is above)");
    return (await fetch(`http://${admin}/readyz`).catch(() => undefined))?.ok ? true : undefined;
  }, 20_000, 100);
  say(`agent ready (${SERVICES} services); ${SECONDS} s per run, dnsperf with one thread`);

  // warm the cache: every forwarded name once, then make sure they are cached
  await dnsperf(dnsPort, forwardFile, 10);
  const rows: Array<[string, number, Run]> = [];
  say("1 outstanding (sequential client): baseline, cluster names, cached forwarded names");
  rows.push(["baseline: fake upstream (no cache)", 1, await sequential(upstreamPort, forwardNames)]);
  rows.push(["cluster names", 1, await sequential(dnsPort, clusterNames, agent.pid)]);
  rows.push(["forwarded names, cached", 1, await sequential(dnsPort, forwardNames, agent.pid)]);
  say("100 outstanding (dnsperf): baseline, cluster names, cached forwarded names");
  rows.push(["baseline: fake upstream (no cache)", 100, await dnsperf(upstreamPort, forwardFile, 100)]);
  rows.push(["cluster names", 100, await dnsperf(dnsPort, clusterFile, 100, agent.pid)]);
  rows.push(["forwarded names, cached", 100, await dnsperf(dnsPort, forwardFile, 100, agent.pid)]);
  const metrics = await (await fetch(`http://${admin}/metrics`)).text();
  const misses = /edgemesh_dns_cache_misses_total (\d+)/.exec(metrics)?.[1];
  const f = (x: number | undefined, d: number) => (x === undefined || !Number.isFinite(x) ? "n/a" : x.toFixed(d));
  console.log("| queries | outstanding | QPS | p50 ms | p99 ms | lost | agent cores |");
  console.log("|---|---|---|---|---|---|---|");
  for (const [name, q, r] of rows) console.log(`| ${name} | ${q} | ${f(r.qps, 0)} | ${f(r.p50ms, 3)} | ${f(r.p99ms, 3)} | ${r.lost} | ${f(r.cores, 2)} |`);
  console.log(`\ncache misses over the whole run: ${misses} (the warm-up's ${SERVICES} forwarded names)`);
} finally {
  agent.kill("SIGTERM");
  upstream.kill("SIGTERM");
  await Promise.race([Promise.all([agent.exited, upstream.exited]), Bun.sleep(5000)]);
}
