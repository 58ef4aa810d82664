// What the proxy receiver may dial for another member (least privilege): a
// member names a target, and this node dials it only when it is
// (a) an endpoint on this node of a service we know, at that service's target
//     port and protocol, or
// (b) a port of this node's own host listed in agent.socks5.nodePorts (SOCKS5
//     by node name, e.g. ssh on 22).
// Nothing else: not our loopback (the admin endpoint, the MetaServer with
// edgecore's credentials), not link-local metadata addresses, not other hosts
// of our LAN. Static endpoints are the operator's own list, so an address
// named there (even 127.0.0.1) is allowed by (a).
import { targetPortFor, type Protocol, type Service } from "../../model/index.ts";

export interface TargetRequest {
  protocol: "tcp" | "udp";
  host: string;
  port: number;
}

/** the host a node-name target is dialled at (what SOCKS5 openers send) */
export const NODE_HOST = "127.0.0.1";

const key = (protocol: Protocol | "tcp" | "udp", ip: string, port: number) => `${protocol.toLowerCase()} ${ip} ${port}`;

export class TargetPolicy {
  private local = new Set<string>();
  private readonly nodePorts: ReadonlySet<number>;

  constructor(
    private readonly selfName: string,
    nodePorts: readonly number[],
  ) {
    this.nodePorts = new Set(nodePorts);
  }

  /** rebuilds the set of this node's service endpoints from a snapshot */
  update(services: readonly Service[]): void {
    const next = new Set<string>();
    for (const s of services) {
      for (const ep of s.endpoints) {
        if (ep.nodeName !== this.selfName) continue;
        for (const p of s.ports) {
          const port = targetPortFor(p, ep);
          if (port !== undefined) next.add(key(p.protocol, ep.ip, port));
        }
      }
    }
    this.local = next;
  }

  /** endpoints of known services on this node (for the status) */
  get localEndpoints(): number {
    return this.local.size;
  }

  /** undefined when the target may be dialled, else why not (sent back to the opener) */
  check(req: TargetRequest): string | undefined {
    if (this.local.has(key(req.protocol, req.host, req.port))) return undefined;
    if (req.host === NODE_HOST) {
      if (this.nodePorts.has(req.port)) return undefined;
      return `port ${req.port} of node ${this.selfName} is not open to the mesh (agent.socks5.nodePorts)`;
    }
    return `${req.host}:${req.port}/${req.protocol} is not an endpoint of a known service on node ${this.selfName}`;
  }
}
