// The forwarding cache: record TTLs and negative TTLs, the cacheTTL cap,
// TTLs counted down while cached, LRU eviction.
import { describe, expect, test } from "bun:test";
import type { Answer } from "dns-packet";
import { AnswerCache, cacheKey, replyTtl } from "../../src/agent/dns/cache.ts";
import { RCODE, type Reply } from "../../src/agent/dns/answer.ts";

const a = (name: string, ttl: number, ip = "198.51.100.1"): Answer => ({ name, type: "A", class: "IN", ttl, data: ip });
const soa = (ttl: number, minimum: number): Answer => ({ name: "test", type: "SOA", class: "IN", ttl, data: { mname: "ns.test", rname: "h.test", minimum } });
const reply = (rcode: number, answers: Answer[], authorities: Answer[] = []): Reply => ({ rcode, aa: false, answers, authorities, additionals: [] });

describe("answer cache", () => {
  test("a reply lives as long as its shortest record, negative ones as their SOA says, failures not at all", () => {
    expect(replyTtl(reply(RCODE.NOERROR, [a("x", 300), a("x", 60)]))).toBe(60);
    expect(replyTtl(reply(RCODE.NXDOMAIN, [], [soa(60, 30)]))).toBe(30);
    expect(replyTtl(reply(RCODE.NOERROR, [], [soa(10, 30)]))).toBe(10);
    expect(replyTtl(reply(RCODE.NXDOMAIN, []))).toBe(0);
    expect(replyTtl(reply(RCODE.SERVFAIL, []))).toBe(0);
  });

  test("TTLs count down while cached; the entry is gone when they reach 0; cacheTTL caps them", () => {
    let now = 1_000_000;
    const c = new AnswerCache(100, 30, () => now);
    const key = cacheKey("Example.ORG.", "A", "IN");
    expect(key).toBe(cacheKey("example.org", "A", "IN"));
    c.put(key, reply(RCODE.NOERROR, [a("example.org", 300)]));
    expect((c.get(key)!.answers[0] as any).ttl).toBe(30); // capped by cacheTTL
    now += 12_400;
    expect((c.get(key)!.answers[0] as any).ttl).toBe(18);
    now += 17_599;
    expect(c.get(key)).toBeDefined();
    now += 1;
    expect(c.get(key)).toBeUndefined();
    expect(c.size).toBe(0);

    c.put("nx", reply(RCODE.NXDOMAIN, [], [soa(60, 5)]));
    now += 4_999;
    expect(c.get("nx")?.rcode).toBe(RCODE.NXDOMAIN);
    now += 1;
    expect(c.get("nx")).toBeUndefined();
    c.put("fail", reply(RCODE.SERVFAIL, []));
    expect(c.get("fail")).toBeUndefined();
    expect(c.hits).toBe(4);
  });

  test("cacheTTL 0 or cacheSize 0 turn it off", () => {
    const off = new AnswerCache(100, 0);
    off.put("k", reply(RCODE.NOERROR, [a("x", 300)]));
    expect(off.get("k")).toBeUndefined();
    const none = new AnswerCache(0, 30);
    none.put("k", reply(RCODE.NOERROR, [a("x", 300)]));
    expect(none.get("k")).toBeUndefined();
  });

  test("bounded: the least recently used entry is evicted first", () => {
    const c = new AnswerCache(3, 30);
    for (const k of ["a", "b", "c"]) c.put(k, reply(RCODE.NOERROR, [a(k, 60)]));
    expect(c.get("a")).toBeDefined(); // a is now the most recent
    c.put("d", reply(RCODE.NOERROR, [a("d", 60)]));
    expect(c.size).toBe(3);
    expect(c.get("b")).toBeUndefined();
    for (const k of ["a", "c", "d"]) expect(c.get(k)).toBeDefined();
  });
});
