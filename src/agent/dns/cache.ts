// Forwarded answers, kept as long as their records say (never longer than
// cacheTTL), negative answers as long as their SOA says (RFC 2308). Bounded:
// the least recently used entry goes first.
import type { Answer } from "dns-packet";
import { RCODE, type Reply } from "./answer.ts";

interface Entry {
  reply: Reply;
  storedMs: number;
  expiresMs: number;
}

export function cacheKey(name: string, type: string, klass: string): string {
  return `${name.replace(/\.$/, "").toLowerCase()}|${type}|${klass}`;
}

/** how long a reply may be kept, in seconds; 0 = not at all */
export function replyTtl(reply: Reply): number {
  if (reply.rcode === RCODE.NOERROR && reply.answers.length) return Math.min(...reply.answers.map((a) => ttlOf(a)));
  if (reply.rcode === RCODE.NXDOMAIN || (reply.rcode === RCODE.NOERROR && !reply.answers.length)) {
    const soa = reply.authorities.find((a) => a.type === "SOA");
    // a negative answer without SOA carries no lifetime: not cached (RFC 2308 §5)
    if (!soa || soa.type !== "SOA") return 0;
    return Math.min(ttlOf(soa), soa.data.minimum ?? 0);
  }
  return 0; // SERVFAIL, REFUSED and the like are retried, not remembered
}

function ttlOf(a: Answer): number {
  return "ttl" in a && typeof a.ttl === "number" ? a.ttl : 0;
}

export class AnswerCache {
  private readonly entries = new Map<string, Entry>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly maxEntries: number,
    /** cacheTTL: the longest a reply stays, whatever its records say */
    private readonly maxTtl: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** the reply with its TTLs counted down by the time it has spent here */
  get(key: string): Reply | undefined {
    const e = this.entries.get(key);
    const now = this.now();
    if (!e || now >= e.expiresMs) {
      if (e) this.entries.delete(key);
      this.misses++;
      return undefined;
    }
    this.hits++;
    // refresh its place: most recently used last
    this.entries.delete(key);
    this.entries.set(key, e);
    const spent = Math.floor((now - e.storedMs) / 1000);
    const age = (list: Answer[]) => list.map((a) => (a.type === "OPT" ? a : { ...a, ttl: Math.max(0, ttlOf(a) - spent) })) as Answer[];
    return { ...e.reply, answers: age(e.reply.answers), authorities: age(e.reply.authorities), additionals: age(e.reply.additionals) };
  }

  /**
   * Stores the reply if it may be cached, and returns it with TTLs capped at
   * cacheTTL: clients are told no longer than we would keep it ourselves.
   */
  put(key: string, reply: Reply): Reply {
    const cap = (list: Answer[]) => list.map((a) => (a.type === "OPT" ? a : { ...a, ttl: Math.min(ttlOf(a), this.maxTtl) })) as Answer[];
    const capped = { ...reply, answers: cap(reply.answers), authorities: cap(reply.authorities), additionals: cap(reply.additionals) };
    const ttl = Math.min(replyTtl(reply), this.maxTtl);
    if (ttl <= 0 || this.maxEntries <= 0) return capped;
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, { reply: capped, storedMs: now, expiresMs: now + ttl * 1000 });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    return capped;
  }

  clear(): void {
    this.entries.clear();
  }
}
