// IPv4 packets as the pod network sees them: the few header fields its
// policy reads, checked against the packet's length, and the ICMP
// "fragmentation needed" it answers an oversized packet with.

export interface Ip4Header {
  src: number;
  dst: number;
  /** the Don't Fragment bit */
  df: boolean;
  protocol: number;
  totalLength: number;
}

/** the header of an IPv4 packet whose lengths agree with its bytes, else undefined (IPv6 and garbage alike) */
export function readIp4(p: Uint8Array): Ip4Header | undefined {
  if (p.byteLength < 20 || p[0]! >> 4 !== 4) return undefined;
  const ihl = (p[0]! & 15) * 4;
  const totalLength = (p[2]! << 8) | p[3]!;
  if (ihl < 20 || totalLength < ihl || totalLength !== p.byteLength) return undefined;
  return {
    src: ((p[12]! << 24) | (p[13]! << 16) | (p[14]! << 8) | p[15]!) >>> 0,
    dst: ((p[16]! << 24) | (p[17]! << 16) | (p[18]! << 8) | p[19]!) >>> 0,
    df: (p[6]! & 0x40) !== 0,
    protocol: p[9]!,
    totalLength,
  };
}

/** RFC 1071 checksum over `b` */
export function internetChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.byteLength; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.byteLength & 1) sum += b[b.byteLength - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * ICMP destination unreachable / fragmentation needed (type 3 code 4) for
 * `orig`, from `from` to orig's source, carrying `mtu` as the next-hop MTU
 * and orig's header plus 8 bytes (RFC 792, RFC 1191).
 */
export function fragmentationNeeded(orig: Uint8Array, from: number, mtu: number): Uint8Array {
  const ihl = (orig[0]! & 15) * 4;
  const quoted = orig.subarray(0, Math.min(orig.byteLength, ihl + 8));
  const icmpLen = 8 + quoted.byteLength;
  const out = new Uint8Array(20 + icmpLen);
  const v = new DataView(out.buffer);
  out[0] = 0x45;
  v.setUint16(2, out.byteLength);
  out[8] = 64; // TTL
  out[9] = 1; // ICMP
  v.setUint32(12, from);
  out.set(orig.subarray(12, 16), 16); // to the original source
  v.setUint16(10, internetChecksum(out.subarray(0, 20)));
  out[20] = 3;
  out[21] = 4;
  v.setUint16(26, mtu);
  out.set(quoted, 28);
  v.setUint16(22, internetChecksum(out.subarray(20)));
  return out;
}
