// Load-balancing policies: each a small type behind one interface, choosing
// among a service's ready endpoints for one client. Pure and deterministic
// given their inputs (Random takes its source of randomness).
import type { Endpoint, LbPolicy, Service } from "../../model/index.ts";

export interface PickContext {
  /** the client's IP (not IP:port: one client, one hash) */
  clientIp: string;
  /** endpoints already tried for this connection, to be skipped */
  exclude?: ReadonlySet<string>;
  now?: number;
}

export interface Policy {
  pick(service: Service, ctx: PickContext): Endpoint | undefined;
}

function candidates(service: Service, exclude?: ReadonlySet<string>): Endpoint[] {
  const ready = service.endpoints.filter((e) => e.ready);
  return exclude?.size ? ready.filter((e) => !exclude.has(e.ip)) : ready;
}

export class RoundRobin implements Policy {
  private next = 0;
  pick(service: Service, ctx: PickContext): Endpoint | undefined {
    const list = candidates(service, ctx.exclude);
    if (list.length === 0) return undefined;
    const e = list[this.next % list.length]!;
    this.next = (this.next + 1) % 1_000_000_007;
    return e;
  }
}

export class Random implements Policy {
  constructor(private readonly rand: () => number = Math.random) {}
  pick(service: Service, ctx: PickContext): Endpoint | undefined {
    const list = candidates(service, ctx.exclude);
    if (list.length === 0) return undefined;
    return list[Math.floor(this.rand() * list.length)];
  }
}

/** FNV-1a, 32 bit: small, fast, well spread for short keys */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * Consistent hashing on a ring of virtual nodes: the same client IP lands on
 * the same endpoint, and when an endpoint comes or goes only the clients
 * that hashed to it move.
 */
export class ConsistentHash implements Policy {
  private ringKey = "";
  private ring: Array<{ h: number; ip: string }> = [];

  constructor(private readonly replicas = 160) {}

  private build(list: Endpoint[]): void {
    const key = list.map((e) => e.ip).sort().join(",");
    if (key === this.ringKey) return;
    this.ringKey = key;
    this.ring = [];
    for (const e of list) for (let i = 0; i < this.replicas; i++) this.ring.push({ h: fnv1a(`${e.ip}#${i}`), ip: e.ip });
    this.ring.sort((a, b) => a.h - b.h);
  }

  pick(service: Service, ctx: PickContext): Endpoint | undefined {
    const all = candidates(service);
    if (all.length === 0) return undefined;
    this.build(all);
    const byIp = new Map(all.map((e) => [e.ip, e]));
    const h = fnv1a(ctx.clientIp);
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ring[mid]!.h < h) lo = mid + 1;
      else hi = mid;
    }
    // walk the ring from the hash point, skipping endpoints already tried
    for (let i = 0; i < this.ring.length; i++) {
      const ip = this.ring[(lo + i) % this.ring.length]!.ip;
      if (!ctx.exclude?.has(ip)) return byIp.get(ip);
    }
    return undefined;
  }
}

/**
 * sessionAffinity: ClientIP. A client keeps its endpoint while it is ready
 * and the client was seen within the timeout; otherwise the inner policy
 * chooses and the choice is remembered.
 */
export class ClientIPAffinity implements Policy {
  private readonly sticky = new Map<string, { ip: string; seen: number }>();

  constructor(
    private readonly inner: Policy,
    private readonly timeoutMs: number,
    private readonly maxEntries = 100_000,
  ) {}

  pick(service: Service, ctx: PickContext): Endpoint | undefined {
    const now = ctx.now ?? Date.now();
    const s = this.sticky.get(ctx.clientIp);
    if (s && now - s.seen <= this.timeoutMs && !ctx.exclude?.has(s.ip)) {
      const e = service.endpoints.find((x) => x.ip === s.ip && x.ready);
      if (e) {
        s.seen = now;
        return e;
      }
    }
    const e = this.inner.pick(service, ctx);
    if (e) {
      this.sticky.delete(ctx.clientIp); // re-insert: Map order doubles as LRU order
      this.sticky.set(ctx.clientIp, { ip: e.ip, seen: now });
      if (this.sticky.size > this.maxEntries) this.sticky.delete(this.sticky.keys().next().value!);
    }
    return e;
  }
}

export function policyFor(service: Service, rand?: () => number): Policy {
  const base = makePolicy(service.lbPolicy, rand);
  return service.sessionAffinity === "ClientIP" ? new ClientIPAffinity(base, service.sessionAffinityTimeoutSeconds * 1000) : base;
}

function makePolicy(p: LbPolicy, rand?: () => number): Policy {
  switch (p) {
    case "Random":
      return new Random(rand);
    case "ConsistentHash":
      return new ConsistentHash();
    default:
      return new RoundRobin();
  }
}
