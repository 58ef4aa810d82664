// The virtio-net header in front of every packet of a TUN with IFF_VNET_HDR
// (10 bytes, little-endian as the host). With TUNSETOFFLOAD the kernel hands
// us TCP segments of up to gso_max_size at once (GSO) with their checksum
// left to finish, and takes them back the same way: one read, one frame and
// one write per 60 KB instead of per 1.4 KB. The header travels with its
// packet to the peer, which writes both to its TUN; a peer's header is
// checked here before the kernel sees it (the kernel checks it again).
export const VNET_HDR_LEN = 10;

const F_NEEDS_CSUM = 1;
const F_DATA_VALID = 2;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_ECN = 0x80;
/** the smallest segment size accepted from a peer for a packet that is more than one segment (IPv4's minimum MSS is 536) */
export const MIN_GSO_SIZE = 256;

export interface VnetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function readVnet(b: Uint8Array): VnetHeader {
  return {
    flags: b[0]!,
    gsoType: b[1]!,
    hdrLen: b[2]! | (b[3]! << 8),
    gsoSize: b[4]! | (b[5]! << 8),
    csumStart: b[6]! | (b[7]! << 8),
    csumOffset: b[8]! | (b[9]! << 8),
  };
}

/**
 * why a header from a peer is refused for `packetLen` bytes of IPv4 with
 * protocol `protocol` behind it, or undefined: only what our own kernel
 * produces (no GSO, or TCP over IPv4; checksum offsets inside the packet)
 */
export function vnetProblem(h: VnetHeader, packetLen: number, protocol: number): string | undefined {
  if ((h.flags & ~(F_NEEDS_CSUM | F_DATA_VALID)) !== 0) return "unknown flags";
  const gso = h.gsoType & ~GSO_ECN;
  if (gso !== GSO_NONE && gso !== GSO_TCPV4) return "GSO type other than TCP over IPv4";
  if (gso === GSO_TCPV4 && protocol !== 6) return "GSO on a packet that is not TCP";
  // tiny segments would make our kernel cut 64 KiB into thousands of packets: a peer's CPU weapon
  if (gso === GSO_TCPV4 && h.gsoSize < MIN_GSO_SIZE && packetLen - (h.hdrLen || 40) > h.gsoSize) return `GSO segment size ${h.gsoSize} below ${MIN_GSO_SIZE}`;
  if (h.hdrLen > 120) return "header length beyond IP and TCP headers with options";
  if (h.flags & F_NEEDS_CSUM && h.csumStart + h.csumOffset + 2 > packetLen) return "checksum offset outside the packet";
  return undefined;
}

/** the largest IP packet this unit becomes on the wire: one segment of a GSO packet, else itself */
export function wireSize(h: VnetHeader, packetLen: number): number {
  if ((h.gsoType & ~GSO_ECN) === GSO_NONE) return packetLen;
  // headers (hdrLen counts IP + TCP; kernels leave it 0 at times: assume 40 + options up to 60) plus one segment
  return Math.min(packetLen, (h.hdrLen || 60) + h.gsoSize);
}

/** a header for a packet we made ourselves: no offload */
export const PLAIN_VNET = new Uint8Array(VNET_HDR_LEN);
