// What goes over the wire: EDNS sizes, truncation, malformed and unsupported
// packets, and a fuzz run through the whole resolver (no sockets).
import { describe, expect, test } from "bun:test";
import dnsPacket, { type Answer } from "dns-packet";
import { RCODE, type Reply } from "../../src/agent/dns/answer.ts";
import { AnswerCache } from "../../src/agent/dns/cache.ts";
import { encodeReply, parseQuery, replyLimit } from "../../src/agent/dns/message.ts";
import { Resolver } from "../../src/agent/dns/resolver.ts";
import { buildZone } from "../../src/agent/dns/zone.ts";
import type { Question } from "../../src/agent/dns/forward.ts";
import type { Service } from "../../src/model/index.ts";
import { seededRandom } from "../util/xorshift.ts";

const headless = (n: number): Service => ({
  namespace: "demo",
  name: "many",
  type: "ClusterIP",
  clusterIPs: [],
  headless: true,
  externalName: "",
  ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }],
  endpoints: Array.from({ length: n }, (_, i) => ({ ip: `10.2.${i >> 8}.${i & 255}`, nodeName: "edge2", ready: true, hostname: "", ports: [] })),
  sessionAffinity: "None",
  sessionAffinityTimeoutSeconds: 10800,
  lbPolicy: "RoundRobin",
});
const echo: Service = { ...headless(0), name: "echo", headless: false, clusterIPs: ["10.96.0.10"], endpoints: [] };
const zone = buildZone({ generation: 1, services: [echo, headless(60)] }, "cluster.local", 5);

const query = (name: string, type = "A", extra: Partial<dnsPacket.Packet> = {}, udpPayloadSize?: number) =>
  dnsPacket.encode({
    type: "query",
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: "IN" }],
    ...(udpPayloadSize ? { additionals: [{ name: ".", type: "OPT", udpPayloadSize, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] } : {}),
    ...extra,
  });

/** a resolver whose upstream answers every name with 198.51.100.1, counting questions */
function resolver() {
  const asked: Question[] = [];
  const upstream = {
    resolve: async (q: Question) => {
      asked.push(q);
      const a: Answer = { name: q.name, type: "A", class: "IN", ttl: 60, data: "198.51.100.1" };
      return { upstream: "fake", reply: { rcode: RCODE.NOERROR, aa: false, answers: q.type === "A" ? [a] : [], authorities: [], additionals: [] } as Reply };
    },
  };
  return { r: new Resolver(() => zone, new AnswerCache(1000, 30), upstream), asked };
}

describe("wire format", () => {
  test("a reply over UDP fits the client's EDNS size (512 without EDNS), else TC with the answers that fit; TCP gets all", async () => {
    const { r } = resolver();
    const full = dnsPacket.decode((await r.handle(query("many.demo.svc.cluster.local"), "tcp"))!);
    expect(full.answers).toHaveLength(60);
    expect(full.flag_tc).toBe(false);

    const edns = await r.handle(query("many.demo.svc.cluster.local", "A", {}, 1232), "udp");
    expect(edns!.length).toBeLessThanOrEqual(1232);
    const cut = dnsPacket.decode(edns!);
    expect(cut.flag_tc).toBe(true);
    expect(cut.answers!.length).toBeGreaterThan(10);
    expect(cut.answers!.length).toBeLessThan(60);
    expect(cut.additionals!.map((a) => a.type)).toEqual(["OPT"]);

    const classic = await r.handle(query("many.demo.svc.cluster.local"), "udp");
    expect(classic!.length).toBeLessThanOrEqual(512);
    expect(dnsPacket.decode(classic!).flag_tc).toBe(true);

    // a client claiming a large buffer (its address may be forged) still gets
    // at most 1,232 bytes over UDP: no amplification beyond that
    for (const size of [4096, 65535]) {
      const claimed = await r.handle(query("many.demo.svc.cluster.local", "A", {}, size), "udp");
      expect(claimed!.length).toBeLessThanOrEqual(1232);
      expect(dnsPacket.decode(claimed!).flag_tc).toBe(true);
    }
  });

  test("additional records are dropped before answers, and without TC", () => {
    const q = (parseQuery(query("x.test")) as any).query;
    const rr = (i: number): Answer => ({ name: "x.test", type: "A", class: "IN", ttl: 5, data: `10.0.0.${i}` });
    const reply: Reply = { rcode: 0, aa: true, answers: [rr(1)], authorities: [], additionals: Array.from({ length: 40 }, (_, i) => rr(i)) };
    const p = dnsPacket.decode(encodeReply(q, reply, replyLimit(q, "udp")));
    expect(p.flag_tc).toBe(false);
    expect(p.answers).toHaveLength(1);
    expect(p.additionals).toHaveLength(0);
  });

  test("the question comes back as the client spelled it; the ID, RD and AA are right", async () => {
    const { r } = resolver();
    const p = dnsPacket.decode((await r.handle(query("EcHo.DeMo.svc.Cluster.Local"), "udp"))!);
    expect(p.id).toBe(4242);
    expect(p.questions![0]!.name).toBe("EcHo.DeMo.svc.Cluster.Local");
    expect(p.flag_rd && p.flag_ra && p.flag_aa).toBe(true);
    expect(p.answers).toMatchObject([{ name: "EcHo.DeMo.svc.Cluster.Local", data: "10.96.0.10", ttl: 5 }]);
  });

  test("malformed and unsupported packets: FORMERR, NOTIMP, or no reply at all", async () => {
    const { r, asked } = resolver();
    const rcodeOf = (b: Buffer | undefined) => (b ? b.readUInt16BE(2) & 0xf : undefined);
    expect(await r.handle(Buffer.alloc(0), "udp")).toBeUndefined();
    expect(await r.handle(Buffer.from([1, 2, 3]), "udp")).toBeUndefined();
    // a response sent to us is never answered (no reflection loops)
    const resp = query("echo.demo.svc.cluster.local");
    resp[2]! |= 0x80;
    expect(await r.handle(resp, "udp")).toBeUndefined();
    const none = dnsPacket.encode({ type: "query", id: 9, questions: [] });
    expect(rcodeOf(await r.handle(none, "udp"))).toBe(RCODE.FORMERR);
    const two = dnsPacket.encode({ type: "query", id: 9, questions: [{ name: "a.test", type: "A" }, { name: "b.test", type: "A" }] });
    expect(rcodeOf(await r.handle(two, "udp"))).toBe(RCODE.FORMERR);
    const update = query("echo.demo.svc.cluster.local");
    update[2] = (update[2]! & 0x87) | (5 << 3); // opcode UPDATE
    const notimp = await r.handle(update, "udp");
    expect(rcodeOf(notimp)).toBe(RCODE.NOTIMP);
    expect(notimp!.readUInt16BE(0)).toBe(4242);
    expect(rcodeOf(await r.handle(query("echo.demo.svc.cluster.local").subarray(0, 20), "udp"))).toBe(RCODE.FORMERR);
    // a label that would not survive dns-packet's text form (a dot inside it)
    const dotted = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x61, 0x2e, 0x62, 0, 0, 1, 0, 1]);
    expect(rcodeOf(await r.handle(dotted, "udp"))).toBe(RCODE.FORMERR);
    const chaos = dnsPacket.encode({ type: "query", id: 9, questions: [{ name: "version.bind", type: "TXT", class: "CH" }] });
    expect(rcodeOf(await r.handle(chaos, "udp"))).toBe(RCODE.NOTIMP);
    expect(rcodeOf(await r.handle(query("cluster.local", "AXFR"), "udp"))).toBe(RCODE.REFUSED);
    const badvers = dnsPacket.decode((await r.handle(query("echo.demo.svc.cluster.local", "A", { additionals: [{ name: ".", type: "OPT", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 1, flags: 0, flag_do: false, options: [] }] }), "udp"))!);
    expect(badvers.additionals).toMatchObject([{ type: "OPT", extendedRcode: 1 }]); // BADVERS = 16
    expect(asked).toHaveLength(0);
  });

  test("fuzz: 100,000 random and mutated packets never throw, every reply decodes with the sender's ID, and the resolver still answers", async () => {
    const { r } = resolver();
    const rand = seededRandom(0x12345678);
    const seeds = [
      query("echo.demo.svc.cluster.local"),
      query("many.demo.svc.cluster.local", "A", {}, 1232),
      query("_http._tcp.many.demo.svc.cluster.local", "SRV"),
      query("10.0.96.10.in-addr.arpa", "PTR"),
      query("dns-version.cluster.local", "TXT"),
      query("example.org", "AAAA", {}, 4096),
    ];
    let replies = 0;
    for (let i = 0; i < 100_000; i++) {
      let pkt: Buffer;
      const kind = rand(4);
      if (kind === 0) {
        pkt = Buffer.alloc(rand(600));
        for (let j = 0; j < pkt.length; j++) pkt[j] = rand(256);
      } else {
        pkt = Buffer.from(seeds[rand(seeds.length)]!);
        for (let k = 1 + rand(4); k > 0; k--) pkt[rand(pkt.length)] = rand(256);
        if (kind === 2) pkt = pkt.subarray(0, rand(pkt.length + 1));
        if (kind === 3) pkt = Buffer.concat([pkt, Buffer.from(Array.from({ length: rand(40) }, () => rand(256)))]);
      }
      const transport = i % 2 ? "udp" : "tcp";
      const out = await r.handle(pkt, transport);
      if (!out) continue;
      replies++;
      expect(out.readUInt16BE(0)).toBe(pkt.readUInt16BE(0));
      expect(out.readUInt16BE(2) & 0x8000).toBe(0x8000);
      dnsPacket.decode(out); // must not throw
    }
    expect(replies).toBeGreaterThan(10_000);
    const p = dnsPacket.decode((await r.handle(query("echo.demo.svc.cluster.local"), "udp"))!);
    expect(p.answers).toMatchObject([{ data: "10.96.0.10" }]);
  }, 60_000);
});
