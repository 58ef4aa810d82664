// The NAT behaviour matrix (needs root): edge1 behind nat1 and edge2 behind
// nat2 as in the lab, each gateway set to one behaviour of the field; for
// every cell, fresh agents (conntrack flushed) make a first stream edge1 →
// edge2 and we measure whether and how fast the pair becomes direct.
//   inbound: what the gateway answers to an unsolicited SYN: drop (silent),
//     rst (TCP RST), icmp (ICMP port unreachable);
//   mapping: preserve (endpoint-independent, port kept), range
//     (endpoint-independent? from a pool 40000-49999), random
//     (--random-fully: a new port per connection), sequential (nftables:
//     each new connection the next port of 40000-40255; only in
//     BENCH_NAT_CELLS, e.g. drop/preserve:drop/sequential).
// The lab's WAN is a bridge: the two NATs are a fraction of a millisecond
// apart (this kernel has no netem), the hardest case for racing SYNs.
// Usage: bun scripts/bench-nat.ts [runs per cell, default 20]
//   BENCH_NAT_CELLS="rst/preserve:rst/preserve,drop/random:drop/preserve"
//   picks cells; the default is every pair of inbound behaviours with
//   preserving mappings, and every pair of mappings with silent drops.
//   BENCH_NAT_CELLS=all: every pair of the nine behaviours (45 cells);
//   BENCH_NAT_SKIP=a:b,... leaves cells out; BENCH_NAT_RANDOM_RUNS=N runs
//   only N in cells with a port-randomising NAT (they cannot punch), and
//   BENCH_NAT_RANDOM_WATCH_MS=T watches those for a direct path T ms.
//   BENCH_NAT_ICMP_FILTER=0 runs the agents without their punch filter
//   (agent.tunnel.punchIcmpFilter: false), for comparison.
//   BENCH_NAT_CGNAT=drop/preserve puts a carrier-grade NAT with that
//   behaviour in front of nat2 (double NAT: edge2 → nat2 → cgnat → WAN).
import { join } from "node:path";
import { Lab, BUN, waitFor, type GatewayBehaviour } from "../test/lab/index.ts";
import { restartFresh, SOCKS, startMesh } from "../test/lab/mesh.ts";
import { ensureBinary, ROOT } from "../test/util/run.ts";

const RUNS = Number(process.argv[2] ?? 20);
const DIRECT_WITHIN_MS = 8_000;
const FIX = join(ROOT, "test/fixtures");
const say = (s: string) => process.stderr.write(`bench-nat: ${s}\n`);
const quantile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

type Inbound = NonNullable<GatewayBehaviour["inbound"]>;
type Mapping = NonNullable<GatewayBehaviour["mapping"]>;
interface Gateway {
  inbound: Inbound;
  mapping: Mapping;
}
const parse = (s: string): Gateway => {
  const [inbound, mapping] = s.split("/") as [Inbound, Mapping];
  return { inbound, mapping };
};
const label = (g: Gateway) => `${g.inbound}/${g.mapping}`;

function defaultCells(): Array<[Gateway, Gateway]> {
  const cells: Array<[Gateway, Gateway]> = [];
  const inbound: Inbound[] = ["drop", "rst", "icmp"];
  for (let i = 0; i < inbound.length; i++) for (let j = i; j < inbound.length; j++) cells.push([{ inbound: inbound[i]!, mapping: "preserve" }, { inbound: inbound[j]!, mapping: "preserve" }]);
  const mapping: Mapping[] = ["preserve", "range", "random"];
  for (let i = 0; i < mapping.length; i++) for (let j = i; j < mapping.length; j++) if (i + j > 0) cells.push([{ inbound: "drop", mapping: mapping[i]! }, { inbound: "drop", mapping: mapping[j]! }]);
  return cells;
}

/** every unordered pair of the nine gateway behaviours (45 cells) */
function allCells(): Array<[Gateway, Gateway]> {
  const kinds: Gateway[] = [];
  for (const mapping of ["preserve", "range", "random"] as Mapping[]) for (const inbound of ["drop", "rst", "icmp"] as Inbound[]) kinds.push({ inbound, mapping });
  const cells: Array<[Gateway, Gateway]> = [];
  for (let i = 0; i < kinds.length; i++) for (let j = i; j < kinds.length; j++) cells.push([kinds[i]!, kinds[j]!]);
  return cells;
}

const spec = process.env.BENCH_NAT_CELLS;
const skip = new Set((process.env.BENCH_NAT_SKIP ?? "").split(",").filter(Boolean));
const cells: Array<[Gateway, Gateway]> = (spec === "all" ? allCells() : spec ? spec.split(",").map((c) => c.split(":").map(parse) as [Gateway, Gateway]) : defaultCells()).filter(
  ([a, b]) => !skip.has(`${label(a)}:${label(b)}`),
);
/** cells where a NAT randomises ports cannot punch: BENCH_NAT_RANDOM_RUNS of them (default: as many as the others) */
const RANDOM_RUNS = Number(process.env.BENCH_NAT_RANDOM_RUNS ?? RUNS);
/** and how long to watch them for a direct path (BENCH_NAT_RANDOM_WATCH_MS, default as the others) */
const RANDOM_WATCH_MS = Number(process.env.BENCH_NAT_RANDOM_WATCH_MS ?? DIRECT_WITHIN_MS);

const binary = process.env.EDGEMESH_BINARY ?? (await ensureBinary());
const lab = await Lab.create({ name: "benchnat" });
const rows: string[] = [];
const cgnat = process.env.BENCH_NAT_CGNAT ? parse(process.env.BENCH_NAT_CGNAT) : undefined;
try {
  if (cgnat) {
    await lab.addCarrierNat("nat2");
    await lab.setGateway("cgnat", cgnat);
  }
  const mesh = startMesh(lab, { binary, agents: [{ name: "edge1", host: "edge1" }, { name: "edge2", host: "edge2" }], ...(process.env.BENCH_NAT_ICMP_FILTER === "0" ? { punchIcmpFilter: false } : {}) });
  lab.spawn("edge2", [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9001", "echo"]);
  await mesh.startAll();
  interface Peer { nodeName: string; path: string; relayedReason?: string }
  const peerOf = async () => (await mesh.status<{ peers: Peer[] }>("edge1")).peers.find((p) => p.nodeName === "edge2");
  for (const [g1, g2] of cells) {
    await lab.setGateway("nat1", g1);
    await lab.setGateway("nat2", g2);
    const times: number[] = [];
    const reasons = new Map<string, number>();
    let served = 0;
    // endpoint-dependent NATs (a new port per destination) cannot be punched without predicting ports
    const randomising = [g1, g2].some((g) => g.mapping === "random" || g.mapping === "sequential");
    const runs = randomising ? RANDOM_RUNS : RUNS;
    const watchMs = randomising ? RANDOM_WATCH_MS : DIRECT_WITHIN_MS;
    for (let run = 1; run <= runs; run++) {
      // every run starts with no NAT state: mappings and CLOSE entries of the last one gone
      await restartFresh(lab, mesh, ["edge1", "edge2"], ["nat1", "nat2", ...(cgnat ? ["cgnat"] : [])]);
      const t0 = performance.now();
      const r = await lab.exec("edge1", [BUN, join(FIX, "socks-client.ts"), SOCKS, "edge2", "9001", "echo"], { timeoutMs: 30_000 });
      if (/"ok":true/.test(r.stdout)) served++;
      let last: Peer | undefined;
      const direct = await waitFor(async () => (last = await peerOf())?.path === "direct", { timeoutMs: watchMs, intervalMs: 20, description: "direct" }).then(
        () => true,
        () => false,
      );
      if (direct) times.push(performance.now() - t0);
      else {
        // the round that failed says why once it ends (three attempts of up to 3 s); asked of the first three relayed runs
        if ([...reasons.values()].reduce((a, b) => a + b, 0) < 3) await waitFor(async () => /^hole punching failed/.test((last = await peerOf())?.relayedReason ?? "") || last?.path === "direct", { timeoutMs: 15_000, intervalMs: 200, description: "a reason" }).catch(() => {});
        const why = (last?.relayedReason ?? (last?.path === "direct" ? "direct only after the first round" : "no reason")).replace(/; next try in \d+ s/, "").replace(/; the last: [^)]*/, "").replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "ADDR");
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
      }
      say(`${label(g1)} × ${label(g2)} run ${run}/${runs}: ${direct ? `direct after ${Math.round(times.at(-1)!)} ms` : "relayed"}`);
    }
    const top = [...reasons.entries()].sort((a, b) => b[1] - a[1])[0];
    const row = `| ${label(g1)} | ${label(g2)}${cgnat ? ` behind carrier NAT ${label(cgnat)}` : ""} | ${served}/${runs} | ${times.length}/${runs} | ${times.length ? Math.round(quantile(times, 0.5)!) : "–"} | ${times.length ? Math.round(quantile(times, 0.95)!) : "–"} | ${top ? `${top[0]} (${top[1]})` : ""} |`;
    rows.push(row);
    say(row);
  }
} finally {
  await lab.destroy();
}
console.log(`NAT matrix: ${RUNS} runs per cell, fresh agents and conntrack each run; direct = edge1 shows edge2 direct within ${DIRECT_WITHIN_MS / 1000} s of the first stream${process.env.BENCH_NAT_ICMP_FILTER === "0" ? "; agents without their punch filter" : ""}${RANDOM_WATCH_MS !== DIRECT_WITHIN_MS ? ` (${RANDOM_WATCH_MS / 1000} s in cells with a port-randomising NAT)` : ""}`);
console.log("| nat1 (edge1) | nat2 (edge2) | first stream served | direct | p50 ms to direct | p95 ms to direct | why relayed (runs) |");
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
