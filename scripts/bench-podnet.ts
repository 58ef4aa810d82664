// The pod network in the NAT lab (needs root): pod → pod TCP throughput, ping
// RTT added, and agent CPU-seconds per GiB, on the direct path (pod1 behind
// edge1 → pod3 behind edge3, one LAN) and the relayed one (pod1 → pod2
// behind edge2, whose NAT randomises ports so nothing punches). Every figure
// is put against baselines measured in the same run with the same client
// (iperf3 from Debian, at least as fast as a Node.js client; ping):
//   plain TCP between the nodes (edge1 → edge3's address; for the relayed
//   path, edge1 → the server, the relay's first leg), and
//   the ClusterIP path to the same backend node (iptables DNAT → agent →
//   tunnel → agent → backend), whose throughput the target is set against.
// Pod throughput is the median of ROUNDS alternating transfers. While the
// pod transfer runs, the sending agent's /healthz is asked every 50 ms: its
// answer time shows whether the event loop keeps serving (TUN reads happen
// on a worker thread, never on it).
// Before the mesh starts, a floor for the RTT: pod → pod pings through
// scripts/podnet-floor-relay.ts (our TUN and reader, plain UDP between the
// nodes, no tunnel): what any userspace pod network built this way costs on
// this machine, the tunnel's share left out.
// Usage: bun scripts/bench-podnet.ts [MiB per transfer, default 512]
//   BENCH_PODNET_RTT_ONLY=1 measures only the pings (no transfers)
import { readFileSync } from "node:fs";
import { Lab } from "../test/lab/index.ts";
import { startMesh } from "../test/lab/mesh.ts";
import { ensureBinary } from "../test/util/run.ts";

const MIB = Number(process.argv[2] ?? 512);
const BYTES = MIB * 1024 * 1024;
const RTT_ONLY = process.env.BENCH_PODNET_RTT_ONLY === "1";
const ROUNDS = RTT_ONLY ? 0 : Number(process.env.BENCH_ROUNDS ?? 3);
const say = (s: string) => process.stderr.write(`bench-podnet: ${s}\n`);
const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const CIDR = { edge1: "10.244.1.0/24", edge2: "10.244.2.0/24", edge3: "10.244.3.0/24" };
const POD = { pod1: "10.244.1.2", pod2: "10.244.2.2", pod3: "10.244.3.2" };
const SVC = { edge3: "10.96.0.83", edge2: "10.96.0.82" };

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

const binary = process.env.EDGEMESH_BINARY ?? (await ensureBinary());
const lab = await Lab.create({ name: "benchpodnet" });
const rows: string[] = [];
try {
  await lab.addPod("edge1", "pod1", CIDR.edge1);
  await lab.addPod("edge2", "pod2", CIDR.edge2);
  await lab.addPod("edge3", "pod3", CIDR.edge3);
  const h = lab.hosts;
  const svc = (name: string, ip: string, node: "edge2" | "edge3") =>
    `- {name: ${name}, namespace: bench, clusterIP: ${ip}, ports: [{name: p, port: 5201, targetPort: 5201}], endpoints: [{ip: ${POD[node === "edge2" ? "pod2" : "pod3"]}, nodeName: ${node}}]}`;
  /** ping RTTs (ms) from → to: 300 at 10 ms intervals after 50 not counted */
  const pingP50 = async (from: string, to: string): Promise<number> => {
    await lab.exec(from, ["ping", "-c", "50", "-i", "0.01", "-q", to], { timeoutMs: 30_000 });
    const r = await lab.exec(from, ["ping", "-c", "300", "-i", "0.01", to], { timeoutMs: 60_000 });
    const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
    if (times.length < 250) throw new Error(`ping ${from} → ${to}: ${times.length} replies`);
    return median(times);
  };
  // the floor: our TUN reader and plain UDP between edge1 and edge3, no tunnel
  const relay = (node: "edge1" | "edge3", peer: "edge1" | "edge3") =>
    lab.spawn(node, [process.execPath, new URL("./podnet-floor-relay.ts", import.meta.url).pathname, "floor-tun", h[peer].ip, CIDR[peer]]);
  const relays = [relay("edge1", "edge3"), relay("edge3", "edge1")];
  await Bun.sleep(1500);
  // warmed as the agents are below, so both run compiled code
  await lab.exec("pod1", ["ping", "-c", "5000", "-i", "0.002", "-q", POD.pod3], { timeoutMs: 60_000 });
  const floorNode = await pingP50("edge1", h.edge3.ip);
  const floorPod = await pingP50("pod1", POD.pod3);
  for (const r of relays) await r.stop();
  const floorRow = `| floor: TUN reader + plain UDP, no tunnel (LAN) | – | – | – | – | – | – | ${fmt(floorNode, 3)} | ${fmt(floorPod, 3)} | ${fmt(floorPod - floorNode, 3)} | – |`;
  say(floorRow);
  await lab.setNatMapping("nat2", "random");
  const mesh = startMesh(lab, {
    binary,
    proxy: true,
    agents: [{ name: "edge1", host: "edge1" }, { name: "edge2", host: "edge2" }, { name: "edge3", host: "edge3" }],
    podCIDRs: { edge1: [CIDR.edge1], edge2: [CIDR.edge2], edge3: [CIDR.edge3] },
    services: [svc("to3", SVC.edge3, "edge3"), svc("to2", SVC.edge2, "edge2")],
  });
  // iperf3 servers: in the pods (pod path and ClusterIP path end there), on edge3 and the cloud (plain baselines)
  for (const host of ["pod2", "pod3", "edge3", "cloud"]) lab.spawn(host, ["iperf3", "-s", "-p", "5201"]);
  await mesh.startAll();
  await Bun.sleep(2000);
  const pid = (n: string) => mesh.agents.get(n)!.proc.pid;

  const iperf = async (from: string, to: string): Promise<number> => {
    const r = await lab.exec(from, ["iperf3", "-c", to, "-p", "5201", "-J", "-n", String(BYTES)], { timeoutMs: 600_000 });
    const got = (JSON.parse(r.stdout || "{}") as { end?: { sum_received?: { bytes: number; seconds: number } } }).end?.sum_received;
    if (!got) throw new Error(`iperf3 ${from} → ${to}: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`);
    return got.bytes / got.seconds / 1e6;
  };

  for (const path of [
    { name: "direct (LAN)", node: "edge3", pod: POD.pod3, plainFrom: "edge1", plainTo: h.edge3.ip, svc: SVC.edge3 },
    { name: "relayed (server)", node: "edge2", pod: POD.pod2, plainFrom: "edge1", plainTo: h.cloud.ip, svc: SVC.edge2 },
  ]) {
    // warm: connections, routes, JIT
    // (without the transfers: a quick ping burst, so the code on the path is compiled as in a running agent)
    if (RTT_ONLY) await lab.exec("pod1", ["ping", "-c", "5000", "-i", "0.002", "-q", path.pod], { timeoutMs: 60_000 });
    else await iperf("pod1", path.pod).catch(() => 0);
    const st = (await mesh.status<{ podNetwork: { peers: Array<{ node: string; path: string }> } }>("edge1")).podNetwork.peers.find((p) => p.node === path.node);
    const plain: number[] = [];
    const cluster: number[] = [];
    const pod: number[] = [];
    const cpu: number[] = [];
    const health: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      plain.push(await iperf(path.plainFrom, path.plainTo));
      cluster.push(await iperf("edge1", path.svc));
      const c0 = cpuSeconds(pid("edge1")) + cpuSeconds(pid(path.node));
      // the sending agent's event loop while it carries the transfer: its admin endpoint's answer time
      let probing = true;
      const probe = (async () => {
        while (probing) {
          const r = await lab.exec("edge1", ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "http://127.0.0.1:10556/healthz"], { timeoutMs: 10_000 });
          if (r.code === 0) health.push(Number(r.stdout) * 1000);
          await Bun.sleep(50);
        }
      })();
      pod.push(await iperf("pod1", path.pod));
      probing = false;
      await probe;
      cpu.push((cpuSeconds(pid("edge1")) + cpuSeconds(pid(path.node)) - c0) / (BYTES / 2 ** 30));
      say(`${path.name} round ${r + 1}: plain ${fmt(plain.at(-1)!, 0)} MB/s, ClusterIP ${fmt(cluster.at(-1)!, 0)}, pod ${fmt(pod.at(-1)!, 0)}, CPU ${fmt(cpu.at(-1)!)} s/GiB`);
    }
    if (path.name.startsWith("direct")) rows.push(floorRow);
    // the network's own round trip on the pods' path: one LAN leg; relayed, both legs through the server (edge1 → server, edge2 → server)
    const rttNode = path.node === "edge3" ? await pingP50(path.plainFrom, h.edge3.ip) : (await pingP50("edge1", h.cloud.ip)) + (await pingP50("edge2", h.cloud.ip));
    const rttPod = await pingP50("pod1", path.pod);
    const p = median(pod);
    const c = median(cluster);
    health.sort((a, b) => a - b);
    const p99 = health[Math.min(health.length - 1, Math.floor(health.length * 0.99))] ?? NaN;
    const row = `| ${path.name} (${st?.path ?? "?"}) | ${fmt(median(plain), 0)} | ${fmt(c, 0)} | ${fmt(p, 0)} | ${fmt(p / c)} | ${fmt(p / median(plain))} | ${fmt(median(cpu))} | ${fmt(rttNode, 3)} | ${fmt(rttPod, 3)} | ${fmt(rttPod - rttNode, 3)} | ${fmt(median(health), 1)} / ${fmt(p99, 1)} (${health.length}) |`;
    rows.push(row);
    say(row);
  }
} finally {
  await lab.destroy();
}
console.log(`pod network: ${MIB} MiB per transfer, median of ${ROUNDS} rounds; iperf3 one stream; ping p50 of 300 at 10 ms (nodes, relayed: edge1 → server plus edge2 → server, the two legs the pods' packets take); CPU = both agents' CPU-seconds per GiB during the pod transfer; all processes share the machine's 2 cores`);
console.log("| path | plain TCP MB/s | ClusterIP MB/s | pod → pod MB/s | pod / ClusterIP | pod / plain | agents' CPU s/GiB | ping p50 ms, nodes | ping p50 ms, pods | RTT added ms | sender's /healthz during the transfer, p50 / p99 ms (n) |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
