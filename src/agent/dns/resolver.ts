// One query in, one reply out, whatever the transport: the cluster zone
// first, then the cache, then the upstreams. The servers around it only move
// bytes.
import { answerFromZone, RCODE, type Reply } from "./answer.ts";
import { AnswerCache, cacheKey } from "./cache.ts";
import type { Forwarded, Forwarder, Question } from "./forward.ts";
import { encodeReply, parseQuery, replyLimit, type Query } from "./message.ts";
import type { Zone } from "./zone.ts";
import { ReplyMemo } from "./reply-memo.ts";
import type { SourceRateLimit } from "./rate-limit.ts";

export type Transport = "udp" | "tcp";
type Source = "zone" | "cache" | "upstream" | "error";

export interface ResolverEvents {
  /** every answered query: its type, rcode and where the answer came from */
  answered?(type: string, rcode: number, source: "zone" | "cache" | "upstream" | "error"): void;
  /** a packet that was not a well-formed query */
  rejected?(reason: string): void;
  /** no upstream gave an answer */
  unresolved?(name: string, type: string): void;
  /** a client past its rate of forwarded lookups got REFUSED */
  rateLimited?(client: string): void;
}

// Forwarded lookups in flight at once; past this, new ones get SERVFAIL at
// once instead of piling up sockets and timers (a flood must not take the
// process down).
const MAX_INFLIGHT = 512;

export class Resolver {
  private readonly inflight = new Map<string, Promise<Forwarded | undefined>>();
  private readonly memo = new ReplyMemo();

  constructor(
    private readonly zone: () => Zone,
    private readonly cache: AnswerCache,
    private readonly forwarder: Pick<Forwarder, "resolve">,
    private readonly events: ResolverEvents = {},
    private readonly limit?: SourceRateLimit,
  ) {}

  /**
   * The encoded reply, or undefined when the packet gets none. A repeated
   * zone question is answered synchronously from the memo; the rest may wait
   * for an upstream.
   */
  handle(packet: Buffer, transport: Transport, source = ""): Buffer | undefined | Promise<Buffer | undefined> {
    const zone = this.zone();
    const hit = this.memo.get(zone, packet, transport);
    if (hit) {
      this.events.answered?.(hit.type, hit.rcode, "zone");
      return hit.reply;
    }
    return this.handleFresh(packet, transport, zone, source);
  }

  private async handleFresh(packet: Buffer, transport: Transport, zone: Zone, source: string): Promise<Buffer | undefined> {
    const parsed = parseQuery(packet);
    if (!parsed.ok) {
      this.events.rejected?.(parsed.reason);
      return parsed.reply;
    }
    const q = parsed.query;
    const client = source;
    let reply: Reply;
    let from: Source;
    let pure = false;
    try {
      [reply, from, pure] = await this.resolve(q, zone, client);
    } catch {
      // a bug here must cost one query, not the server
      [reply, from] = [failure(), "error"];
    }
    this.events.answered?.(q.type, reply.rcode, from);
    let encoded: Buffer;
    try {
      encoded = encodeReply(q, reply, replyLimit(q, transport));
    } catch {
      // e.g. an upstream record dns-packet decodes but cannot encode again
      this.events.answered?.(q.type, RCODE.SERVFAIL, "error");
      return encodeReply(q, failure(), replyLimit(q, transport));
    }
    if (pure) this.memo.put(zone, packet, transport, { reply: encoded, type: q.type, rcode: reply.rcode });
    return encoded;
  }

  /** the reply, where it came from, and whether it depends on nothing but the query and the zone */
  private async resolve(q: Query, zone: Zone, client: string): Promise<[Reply, Source, boolean]> {
    if (q.class !== "IN" && q.class !== "ANY") return [{ ...failure(), rcode: RCODE.NOTIMP }, "error", false];
    // zone transfers are not offered: the zone is a view of the API, not data to copy
    if (q.type === "AXFR" || q.type === "IXFR") return [{ ...failure(), rcode: RCODE.REFUSED }, "error", false];
    const found = answerFromZone(zone, q.name, q.type);
    if (found) {
      const own = asAsked(found, q.name);
      // (also SERVFAIL before the first snapshot: the snapshot brings a new zone, which empties the memo)
      if (!own.chase) return [own, "zone", true];
      // ExternalName pointing outside: add the target's records as a recursive server would
      const [target, source] = await this.lookup({ name: own.chase, type: q.type, class: q.class }, client);
      if (target.rcode !== RCODE.NOERROR && target.rcode !== RCODE.NXDOMAIN) return [own, "zone", false];
      return [{ ...own, rcode: target.rcode, answers: [...own.answers, ...target.answers], authorities: target.authorities }, source === "error" ? "zone" : source, false];
    }
    return [...(await this.lookup({ name: q.name, type: q.type, class: q.class }, client)), false];
  }

  private async lookup(q: Question, client: string): Promise<[Reply, "cache" | "upstream" | "error"]> {
    const key = cacheKey(q.name, q.type, q.class);
    const cached = this.cache.get(key);
    if (cached) return [cached, "cache"];
    let pending = this.inflight.get(key);
    if (!pending) {
      // what costs an upstream query is limited per client
      if (this.limit && !this.limit.take(client)) {
        this.events.rateLimited?.(client);
        return [{ ...failure(), rcode: RCODE.REFUSED }, "error"];
      }
      if (this.inflight.size >= MAX_INFLIGHT) return [failure(), "error"];
      // identical questions asked meanwhile share one upstream query
      pending = this.forwarder
        .resolve(q)
        .then((f) => f && { ...f, reply: this.cache.put(key, f.reply) })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    const f = await pending;
    if (!f) {
      this.events.unresolved?.(q.name, q.type);
      return [failure(), "error"];
    }
    return [stripAa(f.reply), "upstream"];
  }
}

/** records owned by the question's name carry its spelling, as CoreDNS does: clients using 0x20 case randomisation see their own name back */
function asAsked<T extends Reply>(reply: T, qname: string): T {
  const lower = qname.replace(/\.$/, "").toLowerCase();
  const spelled = qname.replace(/\.$/, "");
  if (spelled === lower) return reply;
  return { ...reply, answers: reply.answers.map((a) => (a.name === lower ? { ...a, name: spelled } : a)) };
}

function failure(): Reply {
  return { rcode: RCODE.SERVFAIL, aa: false, answers: [], authorities: [], additionals: [] };
}

/** we are not the authority for what we forward */
function stripAa(r: Reply): Reply {
  return r.aa ? { ...r, aa: false } : r;
}
