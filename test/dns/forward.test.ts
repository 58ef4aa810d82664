// The forwarder against fake upstreams on loopback: which upstream is asked,
// in which order, and what counts as a failure.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Forwarder, type AttemptResult } from "../../src/agent/dns/forward.ts";
import { RCODE } from "../../src/agent/dns/answer.ts";
import { startUpstream, type FakeUpstream } from "../fixtures/dns-upstream.ts";
import { freePort } from "../util/run.ts";

let silent: FakeUpstream;
let good: FakeUpstream;
beforeAll(async () => {
  silent = await startUpstream({ host: "127.0.0.1", port: 0, ip: "198.51.100.3", mode: "silent" });
  good = await startUpstream({ host: "127.0.0.1", port: 0, ip: "198.51.100.4" });
});
afterAll(async () => {
  await Promise.all([silent?.stop(), good?.stop()]);
});

const at = (port: number) => ({ host: "127.0.0.1", port });
const A = (name: string) => ({ name, type: "A", class: "IN" });

describe("forwarder", () => {
  test("a silent upstream costs one timeout; the one that answered is asked first afterwards", async () => {
    const attempts: Array<[string, AttemptResult]> = [];
    const f = new Forwarder([at(silent.port), at(good.port)], { timeoutMs: 300, onAttempt: (u, r) => void attempts.push([u, r]) });
    const t0 = performance.now();
    const r = await f.resolve(A("one.example.test"));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(r?.reply.answers).toMatchObject([{ data: "198.51.100.4" }]);
    expect(attempts).toEqual([
      [`127.0.0.1:${silent.port}`, "timeout"],
      [`127.0.0.1:${good.port}`, "ok"],
    ]);
    const t1 = performance.now();
    await f.resolve(A("two.example.test"));
    expect(performance.now() - t1).toBeLessThan(250);
    expect(silent.count("two.example.test")).toBe(0);
  });

  test("a closed port fails at once (ICMP), not after the timeout", async () => {
    const f = new Forwarder([at(freePort()), at(good.port)], { timeoutMs: 3000 });
    const t0 = performance.now();
    expect((await f.resolve(A("three.example.test")))?.upstream).toBe(`127.0.0.1:${good.port}`);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("NXDOMAIN is an answer (no next upstream); SERVFAIL everywhere comes back as SERVFAIL; nobody answering → undefined", async () => {
    const f = new Forwarder([at(good.port), at(silent.port)], { timeoutMs: 200 });
    const nx = await f.resolve(A("nx.example.test"));
    expect(nx?.reply.rcode).toBe(RCODE.NXDOMAIN);
    expect(nx?.reply.authorities[0]?.type).toBe("SOA");
    expect(silent.count("nx.example.test")).toBe(0);
    expect((await f.resolve(A("servfail.example.test")))?.reply.rcode).toBe(RCODE.SERVFAIL);
    expect(silent.count("servfail.example.test")).toBe(1); // tried the next one first
    expect(await new Forwarder([at(silent.port)], { timeoutMs: 100 }).resolve(A("four.example.test"))).toBeUndefined();
    expect(await new Forwarder([], { timeoutMs: 100 }).resolve(A("five.example.test"))).toBeUndefined();
  });
});
