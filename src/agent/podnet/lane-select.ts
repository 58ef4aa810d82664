// Which packets to a peer with a lane up take the lane, and which the
// tunnel stream. The lane carries single packets (ping, DNS, ACKs, a
// request, a short answer): its point is latency. GSO packets (bulk TCP, up
// to 64 KiB each) take the stream, which is made for them: flow control,
// bounded queues, no IP fragmentation. A TCP flow that sent a GSO packet
// keeps to the stream for a while after it, so its segments are not
// overtaken on the faster lane (reordering costs TCP retransmissions).
import { ENVELOPE, LANE_HEADER, LANE_TAG } from "./lane-codec.ts";
import { VNET_HDR_LEN } from "./vnet.ts";

/** how long a TCP flow keeps to the stream after its last GSO packet */
export const STICKY_MS = 500;
/** a datagram no larger than an Ethernet payload less IP and UDP headers: never fragmented on a LAN */
export const MAX_DATAGRAM = 1500 - 28;
/** what a datagram carries at most, with room for the envelope through a server */
export const MAX_LANE_UNIT = MAX_DATAGRAM - ENVELOPE - LANE_HEADER - LANE_TAG;
/** flows remembered (a hash table without chaining: a collision only sends a flow to the stream longer) */
const FLOWS = 4096;

export class LaneSelector {
  private readonly streamUntil = new Float64Array(FLOWS);

  /** whether `unit` ([virtio-net header][IPv4 packet]) may go on the lane at time `now` (ms) */
  mayTakeLane(unit: Uint8Array, now: number): boolean {
    if (unit.byteLength < VNET_HDR_LEN + 20) return false;
    const gso = (unit[1]! & 0x7f) !== 0;
    const ip = VNET_HDR_LEN;
    const fits = !gso && unit.byteLength <= MAX_LANE_UNIT;
    if (unit[ip + 9] !== 6) return fits;
    const ihl = (unit[ip]! & 15) * 4;
    if (unit.byteLength < ip + ihl + 4) return false;
    const flow = flowSlot(unit, ip, ihl);
    if (!fits) {
      this.streamUntil[flow] = now + STICKY_MS;
      return false;
    }
    return this.streamUntil[flow]! <= now;
  }
}

function word(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** one direction of a TCP flow: addresses and ports, mixed */
function flowSlot(unit: Uint8Array, ip: number, ihl: number): number {
  let h = Math.imul(word(unit, ip + 12), 0x9e3779b1);
  h = Math.imul(h ^ word(unit, ip + 16), 0x85ebca6b);
  h = Math.imul(h ^ word(unit, ip + ihl), 0xc2b2ae35);
  return (h ^ (h >>> 16)) & (FLOWS - 1);
}
