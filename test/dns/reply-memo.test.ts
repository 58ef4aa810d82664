// Repeated zone questions are answered from stored replies: each must still
// be the exact reply a fresh resolver would give that packet (its own ID, its
// own spelling, its transport's size), and a new zone must show at once.
import { expect, test } from "bun:test";
import dnsPacket from "dns-packet";
import { AnswerCache } from "../../src/agent/dns/cache.ts";
import { Resolver } from "../../src/agent/dns/resolver.ts";
import { buildZone, type Zone } from "../../src/agent/dns/zone.ts";
import type { Service } from "../../src/model/index.ts";

const svc = (name: string, ip: string, endpoints = 0): Service => ({
  namespace: "demo",
  name,
  type: "ClusterIP",
  clusterIPs: endpoints ? [] : [ip],
  headless: endpoints > 0,
  externalName: "",
  ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }],
  endpoints: Array.from({ length: endpoints }, (_, i) => ({ ip: `10.2.0.${i + 1}`, nodeName: "edge2", ready: true, hostname: "", ports: [] })),
  sessionAffinity: "None",
  sessionAffinityTimeoutSeconds: 10800,
  lbPolicy: "RoundRobin",
});
const query = (id: number, name: string) => dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: "A", class: "IN" }] });

test("a repeated zone question gets the reply a fresh resolver gives: own ID, own spelling, own transport; a new zone shows at once", async () => {
  let zone: Zone = buildZone({ generation: 1, services: [svc("echo", "10.96.0.10"), svc("many", "", 60)] }, "cluster.local", 5);
  const upstream = { resolve: async () => undefined };
  const answered: string[] = [];
  const r = new Resolver(() => zone, new AnswerCache(100, 30), upstream, { answered: (_t, rcode, source) => answered.push(`${rcode}/${source}`) });
  const fresh = () => new Resolver(() => zone, new AnswerCache(100, 30), upstream);

  for (const [id, name, transport] of [
    [1, "echo.demo.svc.cluster.local", "udp"],
    [2, "echo.demo.svc.cluster.local", "udp"], // repeat: from the memo
    [3, "EcHo.demo.svc.cluster.local", "udp"], // other spelling: its own entry
    [4, "many.demo.svc.cluster.local", "udp"], // truncated over UDP ...
    [5, "many.demo.svc.cluster.local", "tcp"], // ... complete over TCP
    [6, "many.demo.svc.cluster.local", "udp"],
    [7, "nope.demo.svc.cluster.local", "udp"],
    [8, "nope.demo.svc.cluster.local", "udp"],
  ] as const) {
    const got = (await r.handle(query(id, name), transport))!;
    const want = (await fresh().handle(query(id, name), transport))!;
    expect(got.equals(want)).toBe(true);
    expect(dnsPacket.decode(got).id).toBe(id);
  }
  expect(dnsPacket.decode((await r.handle(query(9, "many.demo.svc.cluster.local"), "udp"))!).flag_tc).toBe(true);
  expect(dnsPacket.decode((await r.handle(query(10, "many.demo.svc.cluster.local"), "tcp"))!).answers).toHaveLength(60);
  // every answer is counted, memo or not
  expect(answered).toHaveLength(10);
  expect(answered.filter((a) => a === "3/zone")).toHaveLength(2);

  // the synchronous path: a repeat needs no promise
  expect(r.handle(query(11, "echo.demo.svc.cluster.local"), "udp")).toBeInstanceOf(Buffer);

  zone = buildZone({ generation: 2, services: [svc("echo", "10.96.0.99")] }, "cluster.local", 5);
  const changed = dnsPacket.decode((await r.handle(query(12, "echo.demo.svc.cluster.local"), "udp"))!);
  expect((changed.answers?.[0] as { data?: unknown } | undefined)?.data).toBe("10.96.0.99");
  // the rcode is the low 4 bits of the flags: 3 = NXDOMAIN
  expect(dnsPacket.decode((await r.handle(query(13, "many.demo.svc.cluster.local"), "udp"))!).flags! & 0xf).toBe(3);
});
