import { expect, test } from "bun:test";
import { fragmentationNeeded, internetChecksum, readIp4 } from "../src/agent/podnet/packet.ts";
import { RouteTable } from "../src/agent/podnet/route-table.ts";
import { ip4ToInt } from "../src/model/cidr.ts";
import { podnetRuleset, podRouteLine } from "../src/agent/proxier/commands.ts";

/** an IPv4 UDP packet of `size` bytes from src to dst */
function packet(src: string, dst: string, size = 60, df = true): Uint8Array {
  const p = new Uint8Array(size);
  const v = new DataView(p.buffer);
  p[0] = 0x45;
  v.setUint16(2, size);
  if (df) p[6] = 0x40;
  p[8] = 64;
  p[9] = 17;
  v.setUint32(12, ip4ToInt(src)!);
  v.setUint32(16, ip4ToInt(dst)!);
  v.setUint16(10, internetChecksum(p.subarray(0, 20)));
  return p;
}

test("readIp4 takes IPv4 whose length fields agree with its bytes, and nothing else", () => {
  const p = packet("10.244.1.2", "10.244.2.2", 80);
  expect(readIp4(p)).toEqual({ src: ip4ToInt("10.244.1.2")!, dst: ip4ToInt("10.244.2.2")!, df: true, protocol: 17, totalLength: 80 });
  expect(readIp4(p.subarray(0, 79))).toBeUndefined(); // truncated
  const v6 = new Uint8Array(60);
  v6[0] = 0x60;
  expect(readIp4(v6)).toBeUndefined();
  const badIhl = packet("10.244.1.2", "10.244.2.2");
  badIhl[0] = 0x44;
  expect(readIp4(badIhl)).toBeUndefined();
  expect(readIp4(new Uint8Array(10))).toBeUndefined();
});

test("fragmentation needed: ICMP 3/4 to the original source with the MTU and the quoted header, checksums valid", () => {
  const orig = packet("10.244.2.2", "10.244.1.2", 1500);
  const icmp = fragmentationNeeded(orig, ip4ToInt("10.10.1.11")!, 1400);
  const h = readIp4(icmp)!;
  expect(h.protocol).toBe(1);
  expect(h.src).toBe(ip4ToInt("10.10.1.11")!);
  expect(h.dst).toBe(ip4ToInt("10.244.2.2")!);
  expect(internetChecksum(icmp.subarray(0, 20))).toBe(0);
  expect(internetChecksum(icmp.subarray(20))).toBe(0);
  expect([icmp[20], icmp[21]]).toEqual([3, 4]);
  expect(new DataView(icmp.buffer).getUint16(26)).toBe(1400);
  expect(icmp.subarray(28, 48)).toEqual(orig.subarray(0, 20));
  expect(icmp.byteLength).toBe(20 + 8 + 28);
});

const nodes = [
  { name: "edge1", addresses: ["10.10.1.11"], podCIDRs: ["10.244.1.0/24"] },
  { name: "edge2", addresses: ["10.10.2.12"], podCIDRs: ["10.244.2.0/24", "fd00::/64"] },
  { name: "edge3", addresses: ["10.10.1.13"], podCIDRs: ["10.244.3.0/24"] },
  { name: "evil", addresses: [], podCIDRs: ["10.244.0.0/16"] },
  { name: "twin", addresses: [], podCIDRs: ["10.244.1.128/25"] },
];

test("route table: other nodes' CIDRs routed, ours not; overlapping ones refused with the reason", () => {
  const t = new RouteTable(nodes, "edge1");
  expect(t.own.map((c) => c.text)).toEqual(["10.244.1.0/24"]);
  expect(t.routed().map((r) => `${r.cidr.text}@${r.node}`).sort()).toEqual(["10.244.2.0/24@edge2", "10.244.3.0/24@edge3"]);
  expect(t.refused.map((r) => `${r.node} ${r.cidr}: ${r.reason}`).sort()).toEqual(["evil 10.244.0.0/16: overlaps this node's pod CIDR", "twin 10.244.1.128/25: overlaps this node's pod CIDR"]);
  expect(t.nodeFor(ip4ToInt("10.244.2.9")!)).toBe("edge2");
  expect(t.nodeFor(ip4ToInt("10.244.1.9")!)).toBeUndefined();
  expect(t.nodeFor(ip4ToInt("8.8.8.8")!)).toBeUndefined();
});

test("route table: a peer may send from its pods or its node address, only to ours", () => {
  const t = new RouteTable(nodes, "edge1");
  const ip = (s: string) => ip4ToInt(s)!;
  expect(t.checkInbound("edge2", ip("10.244.2.5"), ip("10.244.1.2"))).toBeUndefined();
  expect(t.checkInbound("edge2", ip("10.10.2.12"), ip("10.244.1.2"))).toBeUndefined();
  expect(t.checkInbound("edge2", ip("10.244.2.5"), ip("10.10.1.11"))).toBeUndefined(); // a reply to this host
  expect(t.checkInbound("edge2", ip("10.244.3.5"), ip("10.244.1.2"))).toBe("source"); // edge3's pod, from edge2
  expect(t.checkInbound("edge2", ip("10.244.2.5"), ip("10.244.3.2"))).toBe("destination"); // not ours to deliver
  expect(t.checkInbound("edge2", ip("10.244.2.5"), ip("192.0.2.1"))).toBe("destination");
  expect(t.checkInbound("stranger", ip("10.244.2.5"), ip("10.244.1.2"))).toBe("source");
  expect(t.checkInbound("evil", ip("10.244.9.9"), ip("10.244.1.2"))).toBe("source"); // its refused CIDR gives it nothing
});

test("pod route and chain lines: built from grammar-checked values only", () => {
  expect(podRouteLine("replace", "10.244.2.0/24", "edgemesh-tun", "10.244.1.1")).toBe("route replace 10.244.2.0/24 dev edgemesh-tun proto 97 src 10.244.1.1");
  expect(podRouteLine("del", "10.244.2.0/24", "edgemesh-tun")).toBe("route del 10.244.2.0/24 dev edgemesh-tun proto 97");
  for (const bad of ["10.244.2.0/24 dev lo", "10.244.2.0/33", "x"]) expect(podRouteLine("replace", bad, "edgemesh-tun")).toBeUndefined();
  expect(podRouteLine("replace", "10.244.2.0/24", "tun; reboot")).toBeUndefined();
  expect(podRouteLine("replace", "10.244.2.0/24", "edgemesh-tun", "1.2.3.4 x")).toBeUndefined();
  const rules = podnetRuleset("EDGEMESH-PODNET", "EDGEMESH-PODNET-MSS", "edgemesh-tun");
  expect(rules).toContain("-A EDGEMESH-PODNET-MSS -o edgemesh-tun -p tcp -m tcp --tcp-flags SYN,RST SYN");
  expect(rules).toContain("--clamp-mss-to-pmtu");
  expect(() => podnetRuleset("EDGEMESH-PODNET", "EDGEMESH-PODNET-MSS", "a b")).toThrow(/grammar/);
});

test("the tunnel's dial filter: addresses inside any node's pod CIDR are never dialled", async () => {
  const { inCidrs } = await import("../src/tunnel/addresses.ts");
  const { multiaddr } = await import("@multiformats/multiaddr");
  const { parseCidr4 } = await import("../src/model/cidr.ts");
  const cidrs = [parseCidr4("10.244.3.0/24")!];
  expect(inCidrs(multiaddr("/ip4/10.244.3.1/tcp/20006"), cidrs)).toBe(true);
  expect(inCidrs(multiaddr("/ip4/10.10.1.13/tcp/20006"), cidrs)).toBe(false);
  expect(inCidrs(multiaddr("/ip6/::1/tcp/20006"), cidrs)).toBe(false);
});

test("a peer's virtio-net header: only what our kernel makes is accepted", async () => {
  const { vnetProblem, wireSize } = await import("../src/agent/podnet/vnet.ts");
  const h = (o: Partial<{ flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number }>) => ({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, ...o });
  expect(vnetProblem(h({}), 100, 17)).toBeUndefined();
  expect(vnetProblem(h({ flags: 1, gsoType: 1, hdrLen: 52, gsoSize: 1348, csumStart: 20, csumOffset: 16 }), 30000, 6)).toBeUndefined();
  expect(vnetProblem(h({ flags: 4 }), 100, 6)).toMatch(/flags/);
  expect(vnetProblem(h({ gsoType: 3 }), 100, 17)).toMatch(/GSO type/); // UDP fragmentation offload
  expect(vnetProblem(h({ gsoType: 1, gsoSize: 1000 }), 3000, 17)).toMatch(/not TCP/);
  expect(vnetProblem(h({ flags: 1, csumStart: 90, csumOffset: 16 }), 100, 6)).toMatch(/outside/);
  // a 64 KiB packet cut into 1-byte segments: refused; a small packet with a small size is one segment anyway
  expect(vnetProblem(h({ gsoType: 1, hdrLen: 40, gsoSize: 1 }), 65_000, 6)).toMatch(/segment size 1 below/);
  expect(vnetProblem(h({ gsoType: 1, hdrLen: 40, gsoSize: 100 }), 120, 6)).toBeUndefined();
  expect(vnetProblem(h({ gsoType: 1, hdrLen: 4000, gsoSize: 1348 }), 30_000, 6)).toMatch(/header length/);
  // what one GSO packet becomes on the wire: a segment and its headers
  expect(wireSize(h({ gsoType: 1, hdrLen: 52, gsoSize: 1348 }), 30000)).toBe(1400);
  expect(wireSize(h({}), 1500)).toBe(1500);
});
