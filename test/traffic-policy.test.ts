import { describe, expect, test } from "bun:test";
import { ClientIPAffinity, ConsistentHash, Random, RoundRobin, policyFor } from "../src/agent/traffic/policy.ts";
import type { Endpoint, Service } from "../src/model/index.ts";
import { endpoint, service } from "./util/service.ts";

const ep = (ip: string, ready = true): Endpoint => endpoint(ip, "n", ready);
const svc = (ips: string[], extra: Partial<Service> = {}): Service => service({ endpoints: ips.map((ip) => ep(ip)), ...extra });

describe("RoundRobin", () => {
  test("cycles through ready endpoints", () => {
    const p = new RoundRobin();
    const s = svc(["a", "b", "c"]);
    s.endpoints.push(ep("down", false));
    expect(Array.from({ length: 6 }, () => p.pick(s, { clientIp: "1.1.1.1" })!.ip)).toEqual(["a", "b", "c", "a", "b", "c"]);
  });
  test("skips excluded endpoints (retry after a failed dial) and returns nothing when none are left", () => {
    const p = new RoundRobin();
    expect(p.pick(svc(["a", "b"]), { clientIp: "x", exclude: new Set(["a"]) })!.ip).toBe("b");
    expect(p.pick(svc(["a"]), { clientIp: "x", exclude: new Set(["a"]) })).toBeUndefined();
    expect(p.pick(svc([]), { clientIp: "x" })).toBeUndefined();
  });
});

test("Random uses its randomness source over ready endpoints", () => {
  expect(new Random(() => 0.99).pick(svc(["a", "b", "c"]), { clientIp: "x" })!.ip).toBe("c");
  expect(new Random(() => 0).pick(svc(["a", "b", "c"]), { clientIp: "x" })!.ip).toBe("a");
});

describe("ConsistentHash", () => {
  const clients = Array.from({ length: 2000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
  test("same client IP → same endpoint, whatever its port", () => {
    const p = new ConsistentHash();
    const s = svc(["a", "b", "c", "d"]);
    for (const c of clients.slice(0, 50)) expect(p.pick(s, { clientIp: c })!.ip).toBe(p.pick(s, { clientIp: c })!.ip);
  });
  test("spreads clients over endpoints", () => {
    const p = new ConsistentHash();
    const s = svc(["a", "b", "c", "d"]);
    const counts = new Map<string, number>();
    for (const c of clients) counts.set(p.pick(s, { clientIp: c })!.ip, (counts.get(p.pick(s, { clientIp: c })!.ip) ?? 0) + 1);
    for (const n of counts.values()) expect(n).toBeGreaterThan(300);
  });
  test("removing one endpoint moves only the clients that were on it", () => {
    const p = new ConsistentHash();
    const before = new Map(clients.map((c) => [c, p.pick(svc(["a", "b", "c", "d"]), { clientIp: c })!.ip]));
    const after = new Map(clients.map((c) => [c, p.pick(svc(["a", "b", "d"]), { clientIp: c })!.ip]));
    for (const c of clients) if (before.get(c) !== "c") expect(after.get(c)).toBe(before.get(c)!);
  });
  test("an excluded endpoint is skipped along the ring", () => {
    const p = new ConsistentHash();
    const s = svc(["a", "b", "c"]);
    const first = p.pick(s, { clientIp: "9.9.9.9" })!.ip;
    const second = p.pick(s, { clientIp: "9.9.9.9", exclude: new Set([first]) })!.ip;
    expect(second).not.toBe(first);
  });
});

describe("ClientIP session affinity", () => {
  test("sticks within the timeout, re-picks after it, and when the endpoint is gone", () => {
    const p = new ClientIPAffinity(new RoundRobin(), 1000);
    const s = svc(["a", "b", "c"]);
    const first = p.pick(s, { clientIp: "c1", now: 0 })!.ip;
    expect(p.pick(s, { clientIp: "c1", now: 500 })!.ip).toBe(first);
    expect(p.pick(s, { clientIp: "c1", now: 1400 })!.ip).toBe(first); // refreshed at 500
    const other = p.pick(s, { clientIp: "c1", now: 5000 })!.ip;
    expect(other).not.toBe(first); // expired → inner RoundRobin moved on
    const gone = svc(["a", "b", "c"].filter((x) => x !== other));
    expect(p.pick(gone, { clientIp: "c1", now: 5001 })!.ip).not.toBe(other);
  });
  test("policyFor: affinity wins over the policy", () => {
    const p = policyFor(svc(["a", "b", "c"], { sessionAffinity: "ClientIP", lbPolicy: "Random" }), () => 0.5);
    const s = svc(["a", "b", "c"]);
    const got = new Set(Array.from({ length: 20 }, () => p.pick(s, { clientIp: "c9" })!.ip));
    expect(got.size).toBe(1);
  });
});
