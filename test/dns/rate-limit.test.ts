// Forwarded lookups are rate-limited per client: random names outside the
// cluster cannot make the agent send unbounded upstream queries for one
// client, while other clients, cluster names and cached answers go on.
import { expect, test } from "bun:test";
import dnsPacket from "dns-packet";
import { SourceRateLimit } from "../../src/agent/dns/rate-limit.ts";
import { Resolver } from "../../src/agent/dns/resolver.ts";
import { AnswerCache } from "../../src/agent/dns/cache.ts";
import { buildZone } from "../../src/agent/dns/zone.ts";
import type { Question } from "../../src/agent/dns/forward.ts";

test("a bucket per source: bursts of twice the rate, refilled with time, the table bounded", () => {
  let now = 0;
  const l = new SourceRateLimit(10, 2, () => now);
  let granted = 0;
  for (let i = 0; i < 30; i++) if (l.take("a")) granted++;
  expect(granted).toBe(20);
  now += 100; // one more token
  expect(l.take("a")).toBe(true);
  expect(l.take("a")).toBe(false);
  expect(l.take("b")).toBe(true);
  // a third source evicts the oldest ("a"), which then starts full again
  expect(l.take("c")).toBe(true);
  expect(l.take("a")).toBe(true);
  expect(new SourceRateLimit(0).take("x")).toBe(true);
});

test("past its rate a client's forwarded names are REFUSED; another client, cluster names and cached answers are not limited", async () => {
  const asked: string[] = [];
  const forwarder = {
    resolve: async (q: Question) => {
      asked.push(q.name);
      return { reply: { rcode: 0, aa: false, answers: [{ name: q.name, type: "A", class: "IN", ttl: 60, data: "198.51.100.9" }], authorities: [], additionals: [] }, upstream: "x" } as never;
    },
  };
  const zone = buildZone({ generation: 1, services: [{ namespace: "demo", name: "web", type: "ClusterIP", clusterIPs: ["10.96.0.1"], headless: false, externalName: "", ports: [], endpoints: [], sessionAffinity: "None", sessionAffinityTimeoutSeconds: 1, lbPolicy: "RoundRobin" }] }, "cluster.local", 5);
  const limited: string[] = [];
  const r = new Resolver(() => zone, new AnswerCache(100, 30), forwarder, { rateLimited: (c) => void limited.push(c) }, new SourceRateLimit(5));
  const ask = async (name: string, client: string) => {
    const q = dnsPacket.encode({ type: "query", id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] });
    return (dnsPacket.decode((await r.handle(Buffer.from(q), "udp", client))!) as { rcode?: string }).rcode;
  };
  const rcodes: Array<string | undefined> = [];
  for (let i = 0; i < 15; i++) rcodes.push(await ask(`r${i}.example.test`, "10.244.1.5"));
  expect(rcodes.filter((c) => c === "NOERROR")).toHaveLength(10);
  expect(rcodes.slice(10)).toEqual(["REFUSED", "REFUSED", "REFUSED", "REFUSED", "REFUSED"]);
  expect(asked).toHaveLength(10);
  expect(limited).toHaveLength(5);
  expect(await ask("r0.example.test", "10.244.1.5")).toBe("NOERROR"); // cached
  expect(await ask("web.demo.svc.cluster.local", "10.244.1.5")).toBe("NOERROR"); // cluster zone
  expect(await ask("other.example.test", "10.244.1.6")).toBe("NOERROR"); // another client
  expect(asked).toHaveLength(11);
});

test("DNS over TCP: past tcpMaxConnections a client is closed at accept and counted; idle ones close after tcpIdleSeconds", async () => {
  const { listenTcp } = await import("../../src/agent/dns/server-tcp.ts");
  const { connect } = await import("node:net");
  let refused = 0;
  const l = await listenTcp({ host: "127.0.0.1", port: 0 }, () => undefined, () => {}, { idleMs: 500, maxConnections: 2, maxPipelined: 4 }, () => void refused++);
  const port = (l.server.address() as { port: number }).port;
  const open = () =>
    new Promise<{ closedAfter: Promise<number> }>((resolve) => {
      const t0 = performance.now();
      const s = connect({ host: "127.0.0.1", port }, () => resolve({ closedAfter: new Promise((r) => s.on("close", () => r(performance.now() - t0))) }));
      s.on("error", () => {});
    });
  try {
    const [a, b] = [await open(), await open()];
    await Bun.sleep(50);
    const c = await open();
    expect(await c.closedAfter).toBeLessThan(400);
    expect(refused).toBe(1);
    // the two idle ones are closed by the idle timer
    expect(await a.closedAfter).toBeGreaterThan(400);
    expect(await b.closedAfter).toBeLessThan(3000);
  } finally {
    await l.close();
  }
});
