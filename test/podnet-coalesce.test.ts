// Receive-side TCP coalescing: what merges into one GSO packet, and what must not.
import { expect, test } from "bun:test";
import { coalesceTcp } from "../src/agent/podnet/tcp-coalesce.ts";
import { internetChecksum, readIp4 } from "../src/agent/podnet/packet.ts";
import { readVnet, VNET_HDR_LEN } from "../src/agent/podnet/vnet.ts";

/** [vnet header][IPv4 TCP segment] with a 12-byte timestamp option */
function seg(seq: number, payload: number, o: { flags?: number; sport?: number; fill?: number; ack?: number } = {}): Uint8Array {
  const thl = 32;
  const u = new Uint8Array(VNET_HDR_LEN + 20 + thl + payload);
  const v = new DataView(u.buffer, VNET_HDR_LEN);
  v.setUint8(0, 0x45);
  v.setUint16(2, 20 + thl + payload);
  v.setUint8(6, 0x40);
  v.setUint8(8, 64);
  v.setUint8(9, 6);
  v.setUint32(12, 0x0af40202); // 10.244.2.2
  v.setUint32(16, 0x0af40102); // 10.244.1.2
  v.setUint16(10, internetChecksum(u.subarray(VNET_HDR_LEN, VNET_HDR_LEN + 20)));
  v.setUint16(20, o.sport ?? 5201);
  v.setUint16(22, 40000);
  v.setUint32(24, seq >>> 0);
  v.setUint32(28, o.ack ?? 777);
  v.setUint8(32, (thl / 4) << 4);
  v.setUint8(33, o.flags ?? 0x10);
  v.setUint16(34, 512);
  u.set([1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 9], VNET_HDR_LEN + 40);
  u.fill(o.fill ?? seq & 255, VNET_HDR_LEN + 20 + thl);
  return u;
}

test("a run of one flow's full-size segments becomes one TSO packet with the payloads in order", () => {
  const units = [seg(1000, 1348, { fill: 1 }), seg(2348, 1348, { fill: 2 }), seg(3696, 1348, { fill: 3 }), seg(5044, 700, { fill: 4, flags: 0x18 })];
  const out = coalesceTcp(units);
  expect(out.length).toBe(1);
  const u = out[0]!;
  const h = readVnet(u);
  expect(h).toEqual({ flags: 1, gsoType: 1, hdrLen: 52, gsoSize: 1348, csumStart: 20, csumOffset: 16 });
  const ip = readIp4(u.subarray(VNET_HDR_LEN))!;
  expect(ip.totalLength).toBe(52 + 3 * 1348 + 700);
  expect(internetChecksum(u.subarray(VNET_HDR_LEN, VNET_HDR_LEN + 20))).toBe(0);
  expect(u[VNET_HDR_LEN + 33]).toBe(0x18); // the last one's PSH
  const payload = u.subarray(VNET_HDR_LEN + 52);
  expect([payload[0], payload[1348], payload[2 * 1348], payload[3 * 1348], payload.at(-1)]).toEqual([1, 2, 3, 4, 4]);
  // the pseudo-header sum, uncomplemented, for the kernel to finish
  const tcpLen = 32 + 3 * 1348 + 700;
  let sum = 6 + tcpLen + 0x0af4 + 0x0202 + 0x0af4 + 0x0102;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  expect(new DataView(u.buffer).getUint16(VNET_HDR_LEN + 36)).toBe(sum);
});

test("what must not merge is written as it came", () => {
  // a gap in sequence numbers
  expect(coalesceTcp([seg(0, 1000), seg(2000, 1000)]).length).toBe(2);
  // two flows interleaved: each run is one segment
  expect(coalesceTcp([seg(0, 1000), seg(0, 1000, { sport: 1 }), seg(1000, 1000)]).length).toBe(3);
  // SYN, FIN, RST (flags other than ACK/PSH) and pure ACKs
  expect(coalesceTcp([seg(0, 1000), seg(1000, 1000, { flags: 0x11 })]).length).toBe(2);
  expect(coalesceTcp([seg(0, 0), seg(0, 0)]).length).toBe(2);
  // a different acknowledgement number
  expect(coalesceTcp([seg(0, 1000), seg(1000, 1000, { ack: 1 })]).length).toBe(2);
  // a larger segment after a smaller one
  expect(coalesceTcp([seg(0, 500), seg(500, 1000)]).length).toBe(2);
  // a PSH segment ends the run; the next starts a new one
  const out = coalesceTcp([seg(0, 1000), seg(1000, 1000, { flags: 0x18 }), seg(2000, 1000), seg(3000, 1000)]);
  expect(out.map((u) => readIp4(u.subarray(VNET_HDR_LEN))!.totalLength)).toEqual([52 + 2000, 52 + 2000]);
});

test("runs stop below the size bound", () => {
  const units = Array.from({ length: 100 }, (_, i) => seg(i * 1348, 1348));
  const out = coalesceTcp(units);
  for (const u of out) expect(u.byteLength - VNET_HDR_LEN).toBeLessThanOrEqual(65_000);
  const total = out.reduce((n, u) => n + readIp4(u.subarray(VNET_HDR_LEN))!.totalLength - 52, 0);
  expect(total).toBe(100 * 1348);
  expect(out.length).toBe(3);
});

test("segments whose TCP checksum is left to finish (veth's offload) merge too; other checksum positions do not", () => {
  const partial = (u: Uint8Array, start = 20, offset = 16) => {
    u[0] = 1;
    new DataView(u.buffer).setUint16(6, start, true);
    new DataView(u.buffer).setUint16(8, offset, true);
    return u;
  };
  expect(coalesceTcp([partial(seg(0, 1000)), partial(seg(1000, 1000))]).length).toBe(1);
  expect(coalesceTcp([partial(seg(0, 1000), 24), partial(seg(1000, 1000), 24)]).length).toBe(2);
});
