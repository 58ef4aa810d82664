// Whether one unit from a peer ([virtio-net header][IPv4 packet]) may be
// written to our TUN: the same checks for the tunnel stream (main thread)
// and the datagram lane (reader thread).
import { readIp4, type Ip4Header } from "./packet.ts";
import type { DropReason, RouteTable } from "./route-table.ts";
import { readVnet, VNET_HDR_LEN, vnetProblem, wireSize } from "./vnet.ts";
import { intToIp4 } from "../../model/cidr.ts";

export type Refused = { reason: DropReason | "too-big"; detail: string; header?: Ip4Header };

/** undefined when `from` may send us `unit`, else why not (with the IPv4 header when it parsed) */
export function inboundProblem(table: RouteTable | undefined, from: string, unit: Uint8Array, mtu: number): Refused | undefined {
  const p = unit.subarray(VNET_HDR_LEN);
  const h = readIp4(p);
  if (!h || !table) return { reason: "malformed", detail: `from ${from}` };
  const why = table.checkInbound(from, h.src, h.dst);
  if (why) return { reason: why, detail: `from ${from}: ${intToIp4(h.src)} → ${intToIp4(h.dst)}` };
  const vnet = readVnet(unit);
  const bad = vnetProblem(vnet, p.byteLength, h.protocol);
  if (bad) return { reason: "malformed", detail: `from ${from}: ${bad}` };
  // a peer with a larger MTU: what does not fit ours is refused as a router would
  if (wireSize(vnet, p.byteLength) > mtu) return { reason: "too-big", detail: `from ${from}: ${p.byteLength} bytes`, header: h };
  return undefined;
}
