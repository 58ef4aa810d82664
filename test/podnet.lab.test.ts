// Pod network across sites (issue 18), compiled binary in the NAT lab: a
// "pod" namespace behind each of edge1 and edge3 (one LAN, behind nat1) and
// edge2 (behind nat2), each on its node's pod CIDR 10.244.N.0/24 and attached
// by a veth as a CNI plugin would. Agents run with agent.podNetwork; pod IPs
// reach each other for every pair: over the LAN, relayed, then hole-punched.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { endLab, restartFresh, startMesh, type Mesh } from "./lab/mesh.ts";
import { ensureBinary } from "./util/run.ts";

const FIX = join(import.meta.dir, "fixtures");
const MiB = 1024 * 1024;
let lab: Lab;
let mesh: Mesh;
const PODS = { edge1: "pod1", edge2: "pod2", edge3: "pod3" } as const;
const CIDR = { edge1: "10.244.1.0/24", edge2: "10.244.2.0/24", edge3: "10.244.3.0/24" } as const;
const IP = { pod1: "10.244.1.2", pod2: "10.244.2.2", pod3: "10.244.3.2" } as const;
type Pod = keyof typeof IP;

interface PodnetStatus {
  podNetwork: { routes: Array<{ cidr: string; node: string }>; peers: Array<{ node: string; path: string; packetsOut: number; packetsIn: number }>; dropped: Record<string, number> };
}

beforeAll(async () => {
  lab = await Lab.create({ name: "podnet" });
  for (const [node, pod] of Object.entries(PODS)) await lab.addPod(node, pod, CIDR[node as keyof typeof CIDR]);
  // edge1 is a stricter host: FORWARD policy DROP (as Docker leaves it) and strict reverse-path filtering
  await lab.execOrThrow("edge1", ["iptables", "-P", "FORWARD", "DROP"]);
  await lab.execOrThrow("edge1", ["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"]);
  mesh = startMesh(lab, {
    binary: await ensureBinary(),
    agents: [{ name: "edge1", host: "edge1" }, { name: "edge2", host: "edge2" }, { name: "edge3", host: "edge3" }],
    podCIDRs: { edge1: [CIDR.edge1], edge2: [CIDR.edge2], edge3: [CIDR.edge3] },
    proxy: true,
    dns: { upstreams: [] },
    services: [`- {name: peers, namespace: default, clusterIP: None, ports: [{name: echo, port: 9001}], endpoints: [{ip: ${IP.pod2}, nodeName: edge2}, {ip: ${IP.pod3}, nodeName: edge3}]}`],
  });
  for (const pod of Object.keys(IP)) {
    lab.spawn(pod, [BUN, join(FIX, "tcp-sink.ts"), "0.0.0.0", "9001", "echo"]);
    lab.spawn(pod, [BUN, join(FIX, "udp-echo.ts"), "0.0.0.0", "9002"]);
    lab.spawn(pod, [BUN, join(FIX, "tcp-source.ts"), "0.0.0.0", "9100"]);
  }
  await mesh.startAll();
  // every agent has routed the two other nodes' pod CIDRs
  for (const n of ["edge1", "edge2", "edge3"]) await waitFor(async () => (await mesh.status<PodnetStatus>(n)).podNetwork?.routes.length === 2, { timeoutMs: 10_000, description: `${n}'s pod routes` });
}, 90_000);

afterAll(() => endLab(lab, mesh), 30_000);

const tcpEcho = async (from: Pod, to: Pod) => JSON.parse((await lab.exec(from, [BUN, join(FIX, "probe-connect.ts"), IP[to], "9001", "8000"], { timeoutMs: 15_000 })).stdout || "{}").ok === true;
const udpEcho = async (from: Pod, to: Pod) => JSON.parse((await lab.exec(from, [BUN, join(FIX, "udp-client.ts"), IP[to], "9002", "5"], { timeoutMs: 15_000 })).stdout || "{}").ok === true;
const ping = async (from: Pod, to: Pod) => (await lab.exec(from, ["ping", "-c", "3", "-i", "0.2", "-W", "2", IP[to]], { timeoutMs: 15_000 })).code === 0;

test("every pair of pods reaches each other by pod IP: ping, TCP and UDP, both ways (same LAN, across the NATs)", async () => {
  const pods = Object.keys(IP) as Pod[];
  const failures: string[] = [];
  for (const a of pods)
    for (const b of pods) {
      if (a === b) continue;
      if (!(await ping(a, b))) failures.push(`ping ${a}→${b}`);
      if (!(await tcpEcho(a, b))) failures.push(`tcp ${a}→${b}`);
      if (!(await udpEcho(a, b))) failures.push(`udp ${a}→${b}`);
    }
  expect(failures).toEqual([]);
  // the packets went through the agents (not some other route): edge1 carried some to each peer
  const st = (await mesh.status<PodnetStatus>("edge1")).podNetwork;
  for (const node of ["edge2", "edge3"]) expect(st.peers.find((p) => p.node === node)?.packetsOut ?? 0).toBeGreaterThan(0);
  const out = await lab.exec("edge1", ["ip", "route", "show", "dev", "edgemesh-tun"]);
  expect(out.stdout).toContain("10.244.2.0/24");
  expect(out.stdout).toContain("10.244.3.0/24");
  expect(mesh.logs("edge1")).toMatch(/enabled IPv4 forwarding/);
}, 120_000);

test("MTU: an oversized packet with DF gets ICMP 'fragmentation needed' (mtu 1400); TCP SYNs into the tunnel have their MSS clamped", async () => {
  const r = await lab.exec("pod1", ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1450", IP.pod2], { timeoutMs: 10_000 });
  expect(r.code).not.toBe(0);
  expect(r.stdout + r.stderr).toMatch(/mtu = 1400|message too long, mtu=1400/i);
  // a packet that fits still goes
  expect((await lab.exec("pod1", ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1300", IP.pod2], { timeoutMs: 10_000 })).code).toBe(0);
  const mss = (await lab.exec("edge1", ["iptables", "-w", "5", "-t", "mangle", "-L", "EDGEMESH-PODNET-MSS", "-v", "-n", "-x"])).stdout;
  const clamped = mss.split("\n").filter((l) => l.includes("TCPMSS")).reduce((n, l) => n + Number(l.trim().split(/\s+/)[0]), 0);
  expect(clamped).toBeGreaterThan(0);
}, 30_000);

test("a headless service resolves to pod IPs on other sites, and they answer", async () => {
  const r = await lab.exec("edge1", ["dig", "+short", "+time=2", "+tries=2", "@169.254.96.16", "peers.default.svc.cluster.local", "A"]);
  const ips = r.stdout.trim().split("\n").sort();
  expect(ips).toEqual([IP.pod2, IP.pod3]);
  for (const ip of ips) {
    const got = JSON.parse((await lab.exec("pod1", [BUN, join(FIX, "probe-connect.ts"), ip, "9001", "8000"], { timeoutMs: 15_000 })).stdout || "{}");
    expect(got.ok).toBe(true);
  }
}, 60_000);

test("a packet from a peer whose source is not in that peer's pod CIDRs is dropped and counted", async () => {
  // pod2 (behind edge2) sends from an address of edge3's pod CIDR
  await lab.exec("pod2", ["ip", "addr", "add", "10.244.3.77/32", "dev", "eth0"]);
  try {
    const before = (await mesh.status<PodnetStatus>("edge1")).podNetwork.dropped.source ?? 0;
    const r = await lab.exec("pod2", ["ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.244.3.77", IP.pod1], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    const after = (await mesh.status<PodnetStatus>("edge1")).podNetwork.dropped.source ?? 0;
    expect(after - before).toBeGreaterThanOrEqual(3);
    expect(mesh.logs("edge1")).toMatch(/pod network packet dropped reason=source detail="?from edge2: 10\.244\.3\.77/);
    // the honest traffic from the same peer still flows
    expect(await ping("pod2", "pod1")).toBe(true);
  } finally {
    await lab.exec("pod2", ["ip", "addr", "del", "10.244.3.77/32", "dev", "eth0"]);
  }
}, 60_000);

test("behind a NAT that randomises ports (no punching) the pods talk over the relayed path: ping, TCP and UDP both ways", async () => {
  await lab.setNatMapping("nat2", "random");
  try {
    await restartFresh(lab, mesh, ["edge1", "edge2", "edge3"], ["nat2"]);
    for (const n of ["edge1", "edge3"]) await waitFor(async () => (await mesh.status<PodnetStatus>(n)).podNetwork?.routes.length === 2, { timeoutMs: 10_000, description: `${n}'s routes` });
    const failures: string[] = [];
    for (const [a, b] of [["pod1", "pod2"], ["pod2", "pod1"], ["pod3", "pod2"], ["pod2", "pod3"]] as Array<[Pod, Pod]>) {
      if (!(await ping(a, b))) failures.push(`ping ${a}→${b}`);
      if (!(await tcpEcho(a, b))) failures.push(`tcp ${a}→${b}`);
      if (!(await udpEcho(a, b))) failures.push(`udp ${a}→${b}`);
    }
    if (failures.length && process.env.EDGEMESH_TEST_LOGS) for (const n of ["edge1", "edge2", "edge3"]) console.error(`==== ${n}\n${mesh.logs(n)}\n${JSON.stringify((await mesh.status<PodnetStatus>(n)).podNetwork)}`);
    expect(failures).toEqual([]);
    const peer = (await mesh.status<PodnetStatus>("edge1")).podNetwork.peers.find((p) => p.node === "edge2");
    expect(peer?.path).toBe("relayed");
    // the tunnel never takes a pod-CIDR address (a CNI bridge's, announced by identify) as a path:
    // that would run the tunnel through the pod network, i.e. through itself
    for (const n of ["edge1", "edge2", "edge3"]) expect(mesh.logs(n)).not.toMatch(/via=\/ip4\/10\.244\./);
  } finally {
    await lab.setNatMapping("nat2", "preserve");
    await restartFresh(lab, mesh, ["edge1", "edge2", "edge3"], ["nat2"]);
  }
}, 120_000);

test("a TCP flow pod → pod that starts relayed survives the move to the punched direct path", async () => {
  // fresh agents on both sides: the first packets go relayed
  await Promise.all(["edge1", "edge2"].map((n) => mesh.agents.get(n)?.proc?.stop(5000)));
  await Promise.all(["nat1", "nat2"].map((n) => lab.exec(n, ["conntrack", "-F"])));
  for (const n of ["edge1", "edge2"]) mesh.startAgent(n);
  await mesh.waitReserved(["edge1", "edge2"]);
  await waitFor(async () => (await mesh.status<PodnetStatus>("edge1")).podNetwork?.routes.length === 2, { timeoutMs: 10_000, description: "routes" });
  // 24 MiB at 8 MiB/s: about 3 s, while the punch happens under it
  const flow = lab.exec("pod1", [BUN, join(FIX, "pull-digest.ts"), IP.pod2, "9100", "1", String(24 * MiB), String(8 * MiB)], { timeoutMs: 60_000 });
  const r = JSON.parse((await flow).stdout || "{}");
  expect(r).toMatchObject({ ok: true, bytes: 24 * MiB });
  const logs = mesh.logs("edge1");
  expect(logs).toMatch(/pod network link up node=edge2 path=relayed/);
  expect(logs).toMatch(/pod network path moved node=edge2 path=direct/);
}, 90_000);

test("the node itself reaches pods on other sites, from its pod-CIDR address; when that address goes and comes back (a CNI bridge recreated), the routes follow", async () => {
  const routes = async () => (await lab.exec("edge1", ["ip", "-4", "-o", "route", "show", "dev", "edgemesh-tun"])).stdout;
  const hostPing = async () => (await lab.exec("edge1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", IP.pod2], { timeoutMs: 15_000 })).code === 0;
  expect(await routes()).toMatch(/10\.244\.2\.0\/24 .*src 10\.244\.1\.1/);
  expect(await hostPing()).toBe(true);
  // the kernel removes routes whose source address is deleted
  await lab.execOrThrow("edge1", ["ip", "addr", "del", "10.244.1.1/24", "dev", "vp-pod1"]);
  try {
    await waitFor(async () => /10\.244\.2\.0\/24(?!.*src)/.test(await routes()), { timeoutMs: 15_000, intervalMs: 250, description: "edge1's routes back, without a source" });
  } finally {
    await lab.execOrThrow("edge1", ["ip", "addr", "add", "10.244.1.1/24", "dev", "vp-pod1"]).catch(() => {});
  }
  await waitFor(async () => /10\.244\.2\.0\/24 .*src 10\.244\.1\.1/.test(await routes()) && /10\.244\.3\.0\/24 .*src 10\.244\.1\.1/.test(await routes()), { timeoutMs: 15_000, intervalMs: 250, description: "edge1's routes from 10.244.1.1 again" });
  expect(await hostPing()).toBe(true);
  expect(await ping("pod1", "pod2")).toBe(true);
  expect(mesh.logs("edge1")).toMatch(/pod routes were removed from the host .*cidrs=10\.244\.[23]\.0\/24/);
}, 60_000);

test("stopping the agent removes the device, its routes and its chains", async () => {
  await mesh.agents.get("edge3")!.proc!.stop(5000);
  expect((await lab.exec("edge3", ["ip", "link", "show", "edgemesh-tun"])).code).not.toBe(0);
  // the CNI's own route to the local pods stays; the routes to the other nodes' pods are gone
  const routes = (await lab.exec("edge3", ["ip", "route"])).stdout;
  expect(routes).toContain("10.244.3.0/24 dev vp-pod3");
  expect(routes).not.toContain("10.244.1.0/24");
  expect(routes).not.toContain("10.244.2.0/24");
  const rules = (await lab.exec("edge3", ["iptables-save"])).stdout;
  expect(rules).not.toContain("EDGEMESH-PODNET");
  // nor does the lane's UDP port stay open
  expect((await lab.exec("edge3", ["ss", "-Hunl", "sport", "=", ":20007"])).stdout.trim()).toBe("");
  mesh.startAgent("edge3");
  await mesh.waitReserved(["edge3"]);
  await waitFor(async () => (await mesh.status<PodnetStatus>("edge3")).podNetwork?.routes.length === 2, { timeoutMs: 10_000, description: "edge3's routes again" });
  expect(await ping("pod3", "pod1")).toBe(true);
}, 60_000);

test("an agent killed (SIGKILL) leaves no device or route; its chains are replaced, not doubled, at the next start", async () => {
  const proc = mesh.agents.get("edge3")!.proc!;
  proc.kill("SIGKILL");
  await proc.exited;
  // the device lived as long as the agent's descriptor: it went with the process, and its routes with it
  expect((await lab.exec("edge3", ["ip", "link", "show", "edgemesh-tun"])).code).not.toBe(0);
  expect((await lab.exec("edge3", ["iptables-save"])).stdout).toContain("EDGEMESH-PODNET");
  mesh.startAgent("edge3");
  await mesh.waitReserved(["edge3"]);
  await waitFor(async () => (await mesh.status<PodnetStatus>("edge3")).podNetwork?.routes.length === 2, { timeoutMs: 10_000, description: "edge3's routes again" });
  const rules = (await lab.exec("edge3", ["iptables-save"])).stdout;
  expect(rules.match(/-A FORWARD -j EDGEMESH-PODNET$/gm)?.length).toBe(1);
  expect(rules.match(/-A POSTROUTING -j EDGEMESH-PODNET-MSS$/gm)?.length).toBe(1);
  expect(await ping("pod3", "pod2")).toBe(true);
}, 60_000);

test("a node added to the metadata gets its pod route, without a restart; removed, it loses it; an overlapping CIDR is refused alone", async () => {
  const path = mesh.agents.get("edge1")!.config;
  const original = readFileSync(path, "utf8");
  const routes = async () => (await lab.exec("edge1", ["ip", "route", "show", "dev", "edgemesh-tun"])).stdout;
  try {
    // a new node, and one claiming a CIDR inside edge2's
    const added = original.replace(/^(\s+)nodes:\n/m, (m, sp: string) => `${m}${sp}  - {name: edge9, addresses: [10.10.9.9], podCIDRs: [10.244.9.0/24]}\n${sp}  - {name: zzz, addresses: [], podCIDRs: [10.244.2.128/25]}\n`);
    expect(added).not.toBe(original);
    writeFileSync(path, added);
    await waitFor(async () => (await routes()).includes("10.244.9.0/24"), { timeoutMs: 10_000, description: "edge9's route" });
    const st = (await mesh.status<PodnetStatus & { podNetwork: { refused: Array<{ node: string; cidr: string }> } }>("edge1")).podNetwork;
    expect(st.refused).toEqual([expect.objectContaining({ node: "zzz", cidr: "10.244.2.128/25" })]);
    expect(await routes()).not.toContain("10.244.2.128/25");
    expect(await ping("pod1", "pod2")).toBe(true);
  } finally {
    writeFileSync(path, original);
  }
  await waitFor(async () => !(await routes()).includes("10.244.9.0/24"), { timeoutMs: 10_000, description: "edge9's route gone" });
  expect(mesh.logs("edge1")).toMatch(/pod routes updated added=- removed=10\.244\.9\.0\/24/);
}, 60_000);
