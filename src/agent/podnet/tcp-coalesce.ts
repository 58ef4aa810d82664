// Receive-side coalescing of TCP segments into one GSO packet (as the
// kernel's GRO does on a NIC): consecutive segments of one flow that arrive
// together from a peer are written to the TUN as one packet with a
// virtio-net header (TSO over IPv4, checksum left to the kernel), so the
// host's forwarding path and the pod's TCP handle one packet instead of
// dozens. Only plain data segments merge: IPv4 without options or
// fragmentation, flags ACK (PSH on the last), equal TCP options, window and
// acknowledgement, contiguous sequence numbers, every segment but the last
// of the first one's size. Anything else is written as it came.
import { internetChecksum } from "./packet.ts";
import { VNET_HDR_LEN } from "./vnet.ts";

/** the largest packet we build (an IPv4 total length fits 16 bits; the TUN's gso_max_size is 64 KiB) */
export const MAX_COALESCED = 65_000;
const ACK = 0x10;
const PSH = 0x08;

interface Segment {
  unit: Uint8Array;
  /** TCP header length */
  thl: number;
  payload: number;
  seq: number;
  psh: boolean;
}

/** the unit as a mergeable segment, or undefined */
function segment(unit: Uint8Array): Segment | undefined {
  // a header we can merge under: no GSO already; a checksum left to finish
  // (veth's offload) only at TCP's own field, which the merged packet's replaces
  if (unit.byteLength < VNET_HDR_LEN + 40 || (unit[0]! & ~3) !== 0 || unit[1] !== 0) return undefined;
  if (unit[0]! & 1 && (unit[6] !== 20 || unit[7] !== 0 || unit[8] !== 16 || unit[9] !== 0)) return undefined;
  const o = VNET_HDR_LEN;
  if (unit[o] !== 0x45 || unit[o + 9] !== 6) return undefined;
  if ((unit[o + 6]! & 0x3f) !== 0 || unit[o + 7] !== 0) return undefined; // MF or a fragment offset
  const total = (unit[o + 2]! << 8) | unit[o + 3]!;
  if (total !== unit.byteLength - o) return undefined;
  const thl = (unit[o + 32]! >> 4) * 4;
  const flags = unit[o + 33]!;
  if (thl < 20 || (flags !== ACK && flags !== (ACK | PSH))) return undefined;
  const payload = total - 20 - thl;
  if (payload <= 0) return undefined;
  const seq = ((unit[o + 24]! << 24) | (unit[o + 25]! << 16) | (unit[o + 26]! << 8) | unit[o + 27]!) >>> 0;
  return { unit, thl, payload, seq, psh: (flags & PSH) !== 0 };
}

/** same addresses, ports, acknowledgement, window and options: bytes 12..19 of IP, 0..3 and 8..thl of TCP (not seq, flags or checksum) */
function sameFlow(a: Segment, b: Segment): boolean {
  if (a.thl !== b.thl) return false;
  const o = VNET_HDR_LEN;
  const x = a.unit;
  const y = b.unit;
  for (let i = o + 12; i < o + 20; i++) if (x[i] !== y[i]) return false;
  for (let i = o + 20; i < o + 24; i++) if (x[i] !== y[i]) return false; // ports
  for (let i = o + 28; i < o + 32; i++) if (x[i] !== y[i]) return false; // ack
  for (let i = o + 34; i < o + 36; i++) if (x[i] !== y[i]) return false; // window
  for (let i = o + 40; i < o + 20 + a.thl; i++) if (x[i] !== y[i]) return false; // options
  return true;
}

/** one GSO packet from segments[0..n) (all mergeable, contiguous) */
function build(segs: Segment[], psh: boolean): Uint8Array {
  const first = segs[0]!;
  const hdr = 20 + first.thl;
  let payload = 0;
  for (const s of segs) payload += s.payload;
  const out = new Uint8Array(VNET_HDR_LEN + hdr + payload);
  const v = new DataView(out.buffer);
  // virtio-net header: NEEDS_CSUM, TSO over IPv4, little-endian fields
  out[0] = 1;
  out[1] = 1;
  v.setUint16(2, hdr, true);
  v.setUint16(4, first.payload, true);
  v.setUint16(6, 20, true);
  v.setUint16(8, 16, true);
  const o = VNET_HDR_LEN;
  out.set(first.unit.subarray(o, o + hdr), o);
  let at = o + hdr;
  for (const s of segs) {
    out.set(s.unit.subarray(o + 20 + s.thl), at);
    at += s.payload;
  }
  v.setUint16(o + 2, hdr + payload);
  v.setUint16(o + 10, 0);
  v.setUint16(o + 10, internetChecksum(out.subarray(o, o + 20)));
  if (psh) out[o + 33] = ACK | PSH;
  // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented; the kernel adds the rest
  const tcpLen = first.thl + payload;
  let sum = 6 + tcpLen;
  for (let i = o + 12; i < o + 20; i += 2) sum += (out[i]! << 8) | out[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(o + 36, sum);
  return out;
}

/** the units to write for `units` (each `[virtio-net header][IPv4 packet]`), in order, runs of one flow merged */
export function coalesceTcp(units: Uint8Array[], maxBytes = MAX_COALESCED): Uint8Array[] {
  if (units.length < 2) return units;
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < units.length) {
    const f = segment(units[i]!);
    if (!f || f.psh) {
      out.push(units[i++]!);
      continue;
    }
    const run: Segment[] = [f];
    let next = (f.seq + f.payload) >>> 0;
    let size = 20 + f.thl + f.payload;
    let psh = false;
    for (let j = i + 1; j < units.length; j++) {
      const s = segment(units[j]!);
      if (!s || s.seq !== next || s.payload > f.payload || size + s.payload > maxBytes || !sameFlow(f, s)) break;
      run.push(s);
      next = (next + s.payload) >>> 0;
      size += s.payload;
      // a short segment or PSH ends the run, as in GRO
      if (s.payload < f.payload || s.psh) {
        psh = s.psh;
        break;
      }
    }
    out.push(run.length === 1 ? f.unit : build(run, psh));
    i += run.length;
  }
  return out;
}
