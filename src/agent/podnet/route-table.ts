// Which node owns a pod address, and which packets a peer may send us. Built
// from the controller's nodes (Node.spec.podCIDRs or the static list): every
// IPv4 pod CIDR of another node is routed to that node; a CIDR that overlaps
// ours or another node's is refused (logged), as a packet could not be
// attributed to one owner. Lookups take integers, never strings.
import { cidrContains, cidrsOverlap, ip4ToInt, parseCidr4, type Cidr4 } from "../../model/cidr.ts";
import type { Node } from "../../model/index.ts";

export interface PeerRoutes {
  node: string;
  cidrs: Cidr4[];
  /** the node's own IPv4 addresses: its host may talk to our pods too */
  addresses: number[];
}

export interface Refusal {
  node: string;
  cidr: string;
  reason: string;
}

export type DropReason = "source" | "destination" | "malformed";

export class RouteTable {
  readonly own: Cidr4[] = [];
  readonly ownAddresses: number[] = [];
  readonly peers = new Map<string, PeerRoutes>();
  readonly refused: Refusal[] = [];
  /** every routed CIDR, longest prefix first */
  private readonly routes: Array<{ cidr: Cidr4; node: string }> = [];

  constructor(nodes: ReadonlyArray<Node>, self: string) {
    const me = nodes.find((n) => n.name === self);
    for (const text of me?.podCIDRs ?? []) {
      const c = parseCidr4(text);
      if (c) this.own.push(c);
    }
    for (const a of me?.addresses ?? []) {
      const ip = ip4ToInt(a);
      if (ip !== undefined) this.ownAddresses.push(ip);
    }
    const others = nodes.filter((n) => n.name !== self).sort((a, b) => a.name.localeCompare(b.name));
    for (const n of others) {
      const peer: PeerRoutes = { node: n.name, cidrs: [], addresses: n.addresses.map(ip4ToInt).filter((x): x is number => x !== undefined) };
      for (const text of n.podCIDRs) {
        const c = parseCidr4(text);
        if (!c) continue; // IPv6: not routed yet
        const clash = this.own.some((o) => cidrsOverlap(o, c)) ? "overlaps this node's pod CIDR" : this.routes.find((r) => cidrsOverlap(r.cidr, c));
        if (clash) {
          this.refused.push({ node: n.name, cidr: c.text, reason: typeof clash === "string" ? clash : `overlaps ${clash.cidr.text} of ${clash.node}` });
          continue;
        }
        peer.cidrs.push(c);
        this.routes.push({ cidr: c, node: n.name });
      }
      if (peer.cidrs.length || peer.addresses.length) this.peers.set(n.name, peer);
    }
    this.routes.sort((a, b) => b.cidr.len - a.cidr.len);
  }

  /** the node whose pods own `dst`, if any */
  nodeFor(dst: number): string | undefined {
    for (const r of this.routes) if (cidrContains(r.cidr, dst)) return r.node;
    return undefined;
  }

  /** every routed CIDR with its node */
  routed(): ReadonlyArray<{ cidr: Cidr4; node: string }> {
    return this.routes;
  }

  /** undefined when `from` may send this packet to us; else why not */
  checkInbound(from: string, src: number, dst: number): DropReason | undefined {
    const peer = this.peers.get(from);
    if (!peer || !(peer.cidrs.some((c) => cidrContains(c, src)) || peer.addresses.includes(src))) return "source";
    if (!(this.own.some((c) => cidrContains(c, dst)) || this.ownAddresses.includes(dst))) return "destination";
    return undefined;
  }

  isOwn(ip: number): boolean {
    return this.own.some((c) => cidrContains(c, ip));
  }
}
