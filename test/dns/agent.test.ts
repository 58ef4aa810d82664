// The DNS server of the compiled agent, asked with dig on loopback: services
// come from a fake Kubernetes apiserver (changed while the agent runs), other
// names go to fake upstream resolvers on 127.0.0.1.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import dnsPacket from "dns-packet";
import { FakeApiServer } from "../kube/fake-apiserver/index.ts";
import { startUpstream, type FakeUpstream } from "../fixtures/dns-upstream.ts";
import { ensureBinary, freePort, tempConfigDir, until } from "../util/run.ts";
import { dig, rdata, type DigResult } from "./dig.ts";
import { seededRandom } from "../util/xorshift.ts";

const ZONE = "svc.cluster.local";
let api: FakeApiServer;
let failing: FakeUpstream; // answers everything with SERVFAIL
let good: FakeUpstream;
let agent: ReturnType<typeof Bun.spawn>;
let stderr: Promise<string>;
let dnsPort = 0;
let admin = "";
const q = (args: string[], timeoutS = 2) => dig("127.0.0.1", dnsPort, args, { timeoutS });

const service = (name: string, spec: Record<string, unknown>) => ({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: "demo" }, spec });
const slice = (svc: string, eps: Array<{ ip: string; hostname?: string; ready?: boolean }>, ports = [{ name: "http", port: 8080, protocol: "TCP" }]) => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: `${svc}-x`, namespace: "demo", labels: { "kubernetes.io/service-name": svc } },
  addressType: "IPv4",
  endpoints: eps.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true }, nodeName: "edge2", ...(e.hostname ? { hostname: e.hostname } : {}) })),
  ports,
});
const many = Array.from({ length: 60 }, (_, i) => ({ ip: `10.2.0.${i + 1}` }));

beforeAll(async () => {
  const binary = await ensureBinary();
  api = await FakeApiServer.start();
  api.create("services", service("echo", { clusterIP: "10.96.1.10", ports: [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP" }] }));
  api.create("endpointslices", slice("echo", [{ ip: "10.1.0.1" }]));
  api.create("services", service("dual", { clusterIP: "10.96.1.11", clusterIPs: ["10.96.1.11", "fd00::11"], ports: [{ name: "dns", port: 53, protocol: "UDP" }] }));
  api.create("services", service("db", { clusterIP: "None", ports: [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP" }] }));
  api.create("endpointslices", slice("db", [{ ip: "10.1.0.5", hostname: "db-0" }, { ip: "10.1.0.6", hostname: "db-1" }, { ip: "10.1.0.7", ready: false }]));
  api.create("services", service("idle", { clusterIP: "None", ports: [{ name: "http", port: 80, protocol: "TCP" }] }));
  api.create("endpointslices", slice("idle", [{ ip: "10.1.0.9", ready: false }]));
  api.create("services", service("many", { clusterIP: "None", ports: [{ name: "http", port: 80, protocol: "TCP" }] }));
  api.create("endpointslices", slice("many", many));
  api.create("services", service("ext", { type: "ExternalName", externalName: "www.example.test" }));

  failing = await startUpstream({ host: "127.0.0.1", port: 0, ip: "198.51.100.1", mode: "servfail" });
  good = await startUpstream({ host: "127.0.0.1", port: 0, ip: "198.51.100.2" });
  dnsPort = freePort();
  const adminPort = freePort();
  admin = `127.0.0.1:${adminPort}`;
  const t = tempConfigDir();
  const cfg = t.write(
    "agent.yaml",
    `nodeName: edge1
${t.trust("edge1")}
psk: psk
adminListen: ${admin}
agent:
  metadata: {source: kubernetes, kubernetes: {server: "${api.url}"}}
  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}
  proxy: {enable: false}
  dns: {listen: "127.0.0.1:${dnsPort}", upstreamServers: ["127.0.0.1:${failing.port}", "127.0.0.1:${good.port}"]}
`,
  );
  agent = Bun.spawn([binary, "agent", "--config", cfg], { stdout: "ignore", stderr: "pipe" });
  stderr = new Response(agent.stderr as ReadableStream).text();
  await until(async () => ((await q(["echo.demo.svc.cluster.local"], 1)).status === "NOERROR" ? true : undefined), 15_000, 100);
}, 30_000);

afterAll(async () => {
  agent?.kill("SIGTERM");
  await agent?.exited;
  if (process.env.EDGEMESH_TEST_LOGS) console.error(await stderr);
  await Promise.all([api?.stop(), failing?.stop(), good?.stop()]);
});

/** asks until `ok` holds; returns the time it took */
async function timeUntil(args: string[], ok: (r: DigResult) => boolean, limitMs = 3000): Promise<number> {
  const t0 = performance.now();
  let last: DigResult | undefined;
  while (performance.now() - t0 < limitMs) {
    last = await q(args, 1);
    if (ok(last)) return performance.now() - t0;
    await Bun.sleep(20);
  }
  throw new Error(`not within ${limitMs} ms; last answer:\n${last?.text}`);
}

describe("cluster names", () => {
  test("A, AAAA, headless, endpoint hostnames, SRV, PTR, CNAME, TXT, SOA", async () => {
    const a = await q([`ECHO.demo.${ZONE}`]);
    expect(a.status).toBe("NOERROR");
    expect(a.flags).toContain("aa");
    expect(a.answer).toEqual([["ECHO.demo.svc.cluster.local.", "5", "IN", "A", "10.96.1.10"]]);
    expect(rdata(await q([`dual.demo.${ZONE}`, "AAAA"]), "AAAA")).toEqual(["fd00::11"]);
    expect(rdata(await q([`db.demo.${ZONE}`]), "A").sort()).toEqual(["10.1.0.5", "10.1.0.6"]);
    expect(rdata(await q([`db-1.db.demo.${ZONE}`]), "A")).toEqual(["10.1.0.6"]);

    const srv = await q([`_http._tcp.echo.demo.${ZONE}`, "SRV"]);
    expect(rdata(srv, "SRV")).toEqual([`0 100 80 echo.demo.${ZONE}.`]);
    expect(rdata(srv, "A", "additional")).toEqual(["10.96.1.10"]);
    expect(rdata(await q([`_dns._udp.dual.demo.${ZONE}`, "SRV"]), "SRV")).toEqual([`0 100 53 dual.demo.${ZONE}.`]);
    expect(rdata(await q([`_http._tcp.db.demo.${ZONE}`, "SRV"]), "SRV").sort()).toEqual([`0 50 8080 db-0.db.demo.${ZONE}.`, `0 50 8080 db-1.db.demo.${ZONE}.`]);

    expect(rdata(await q(["-x", "10.96.1.10"]), "PTR")).toEqual([`echo.demo.${ZONE}.`]);
    expect(rdata(await q(["-x", "10.1.0.5"]), "PTR")).toEqual([`db-0.db.demo.${ZONE}.`]);
    expect(rdata(await q(["-x", "fd00::11"]), "PTR")).toEqual([`dual.demo.${ZONE}.`]);

    // ExternalName: the CNAME, and the target's address looked up upstream
    const ext = await q([`ext.demo.${ZONE}`]);
    expect(rdata(ext, "CNAME")).toEqual(["www.example.test."]);
    expect(rdata(ext, "A")).toEqual(["198.51.100.2"]);
    expect(rdata(await q([`ext.demo.${ZONE}`, "CNAME"]), "CNAME")).toEqual(["www.example.test."]);

    expect(rdata(await q(["dns-version.cluster.local", "TXT"]), "TXT")).toEqual(['"1.1.0"']);
    expect(rdata(await q(["cluster.local", "SOA"]), "SOA")[0]).toMatch(/^ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\. \d+ 7200 1800 86400 5$/);
  }, 20_000);

  test("NXDOMAIN for unknown names (and headless without ready endpoints), NODATA for known names without that type; both with SOA", async () => {
    for (const name of [`nope.demo.${ZONE}`, `echo.other.${ZONE}`, `idle.demo.${ZONE}`]) {
      const r = await q([name]);
      expect({ name, status: r.status, answers: r.answer.length, soa: rdata(r, "SOA", "authority").length }).toEqual({ name, status: "NXDOMAIN", answers: 0, soa: 1 });
    }
    for (const [name, type] of [
      [`echo.demo.${ZONE}`, "AAAA"],
      [`echo.demo.${ZONE}`, "MX"],
      [`demo.${ZONE}`, "A"],
    ]) {
      const r = await q([name!, type!]);
      expect({ name, type, status: r.status, answers: r.answer.length, soa: rdata(r, "SOA", "authority").length }).toEqual({ name, type, status: "NOERROR", answers: 0, soa: 1 });
    }
  }, 20_000);

  test("TCP: +tcp answers, and 60 headless endpoints are truncated (TC) over UDP but complete over TCP", async () => {
    const t = await q(["+tcp", `echo.demo.${ZONE}`]);
    expect(rdata(t, "A")).toEqual(["10.96.1.10"]);
    const udp = await q(["+ignore", "+bufsize=1232", `many.demo.${ZONE}`]);
    expect(udp.flags).toContain("tc");
    expect(udp.answer.length).toBeLessThan(60);
    expect(udp.ednsUdp).toBe(1232);
    const tcp = await q(["+tcp", `many.demo.${ZONE}`]);
    expect(tcp.flags).not.toContain("tc");
    expect(rdata(tcp, "A").sort()).toEqual(many.map((e) => e.ip).sort());
    // dig's default: retry over TCP on TC, as resolvers do
    expect(rdata(await q([`many.demo.${ZONE}`]), "A")).toHaveLength(60);
  }, 20_000);

  test("no amplification: a query of about 55 bytes claiming a 65,535-byte EDNS buffer draws at most 1,232 bytes over UDP", async () => {
    const query = dnsPacket.encode({
      type: "query",
      id: 7,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: `many.demo.${ZONE}`, type: "A" }],
      additionals: [{ name: ".", type: "OPT", udpPayloadSize: 65535, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as never],
    });
    expect(query.length).toBeLessThanOrEqual(60);
    const sock = createSocket("udp4");
    try {
      const reply = await new Promise<Buffer>((resolve, reject) => {
        sock.once("message", resolve);
        sock.once("error", reject);
        sock.send(query, dnsPort, "127.0.0.1");
        setTimeout(() => reject(new Error("no reply")), 3000);
      });
      expect(reply.length).toBeLessThanOrEqual(1232);
      expect((dnsPacket.decode(reply) as { flag_tc?: boolean }).flag_tc).toBe(true);
    } finally {
      sock.close();
    }
  }, 20_000);

  test("several queries on one TCP connection, pipelined", async () => {
    const names = ["echo", "db", "dual", "nope"].map((n) => `${n}.demo.${ZONE}`);
    const frames = names.map((name, i) => dnsPacket.streamEncode({ type: "query", id: 100 + i, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: "A" }] }));
    const replies = await new Promise<dnsPacket.Packet[]>((resolve, reject) => {
      const out: dnsPacket.Packet[] = [];
      let buf = Buffer.alloc(0);
      const s = connect({ host: "127.0.0.1", port: dnsPort }, () => s.write(Buffer.concat(frames)));
      s.on("error", reject);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (out.length === frames.length) {
          s.end();
          resolve(out);
        }
      });
      setTimeout(() => reject(new Error(`only ${out.length} replies`)), 5000);
    });
    const byId = new Map(replies.map((r) => [r.id, r]));
    expect((byId.get(100)!.answers![0] as any).data).toBe("10.96.1.10");
    expect(byId.get(101)!.answers).toHaveLength(2);
    expect((byId.get(103) as any).rcode).toBe("NXDOMAIN");
  }, 10_000);

  test("a service created, changed and deleted shows in DNS within 1 s, also a name that just got NXDOMAIN", async () => {
    const name = `late.demo.${ZONE}`;
    expect((await q([name])).status).toBe("NXDOMAIN");
    api.create("services", service("late", { clusterIP: "10.96.1.50", ports: [{ name: "http", port: 80, protocol: "TCP" }] }));
    expect(await timeUntil([name], (r) => rdata(r, "A")[0] === "10.96.1.50")).toBeLessThan(1000);

    api.update("endpointslices", slice("db", [{ ip: "10.1.0.5", hostname: "db-0" }, { ip: "10.1.0.8", hostname: "db-2" }]));
    expect(await timeUntil([`db.demo.${ZONE}`], (r) => rdata(r, "A").sort().join() === "10.1.0.5,10.1.0.8")).toBeLessThan(1000);
    const cur = api.get("services", "demo", "late") as any;
    api.update("services", { ...cur, spec: { ...cur.spec, ports: [{ name: "web", port: 8081, protocol: "TCP" }] } });
    expect(await timeUntil([`_web._tcp.${name}`, "SRV"], (r) => rdata(r, "SRV")[0] === `0 100 8081 ${name}.`)).toBeLessThan(1000);

    api.delete("services", "demo", "late");
    expect(await timeUntil([name], (r) => r.status === "NXDOMAIN")).toBeLessThan(1000);
  }, 20_000);
});

describe("forwarding", () => {
  test("other names go upstream: past one that says SERVFAIL to the next; answers are cached", async () => {
    const r = await q(["www.example.test"]);
    expect(r.status).toBe("NOERROR");
    expect(r.flags).not.toContain("aa");
    expect(rdata(r, "A")).toEqual(["198.51.100.2"]);
    expect(Number(r.answer[0]![1])).toBeLessThanOrEqual(30); // cacheTTL caps the upstream's 300
    const before = failing.queries.length + good.queries.length;
    const again = await q(["WWW.example.test"]);
    expect(rdata(again, "A")).toEqual(["198.51.100.2"]);
    expect(failing.queries.length + good.queries.length).toBe(before); // from the cache

    // negative answers are cached too, for the SOA's minimum
    expect((await q(["nx.example.test"])).status).toBe("NXDOMAIN");
    expect((await q(["nx.example.test"])).status).toBe("NXDOMAIN");
    expect(good.count("nx.example.test")).toBe(1);

    // the failing upstream was asked once, then the good one is preferred
    expect(failing.queries.length).toBe(1);
    expect(good.count("www.example.test", "A")).toBe(1);
  }, 20_000);

  test("a truncated upstream answer is fetched again over TCP", async () => {
    const r = await q(["+tcp", "big.example.test"]);
    expect(rdata(r, "A")).toHaveLength(40);
    expect(good.queries.filter((x) => x.name === "big.example.test").map((x) => x.transport)).toEqual(["udp", "tcp"]);
  }, 10_000);

  test("a large forwarded or zone answer never exceeds 1,232 bytes over UDP, whatever buffer the query claims (TC, then TCP)", async () => {
    for (const name of ["big.example.test", `many.demo.${ZONE}`]) {
      const r = await q(["+ignore", "+bufsize=65535", name]);
      const size = Number(/MSG SIZE\s+rcvd: (\d+)/.exec(r.text)?.[1]);
      expect(size).toBeGreaterThan(500);
      expect(size).toBeLessThanOrEqual(1232);
      expect(r.flags).toContain("tc");
    }
  }, 10_000);

  test("/metrics counts queries by type and rcode, cache hits and upstream latency; /status shows the records served", async () => {
    const m = await (await fetch(`http://${admin}/metrics`)).text();
    expect(m).toMatch(/^edgemesh_dns_queries_total\{type="A",rcode="NXDOMAIN",source="zone"\} [1-9]\d*$/m);
    expect(m).toMatch(/^edgemesh_dns_queries_total\{type="SRV",rcode="NOERROR",source="zone"\} [1-9]\d*$/m);
    expect(m).toMatch(/^edgemesh_dns_queries_total\{type="A",rcode="NOERROR",source="cache"\} [1-9]\d*$/m);
    expect(m).toMatch(/^edgemesh_dns_cache_hits_total [1-9]\d*$/m);
    expect(m).toMatch(new RegExp(`^edgemesh_dns_upstream_requests_total\\{upstream="127.0.0.1:${failing.port}",result="servfail"\\} 1$`, "m"));
    expect(m).toMatch(new RegExp(`^edgemesh_dns_upstream_seconds_total\\{upstream="127.0.0.1:${good.port}"\\} \\d`, "m"));
    const st = (await (await fetch(`http://${admin}/status`)).json()) as { dns: { records: number; queries: number; upstreams: string[] } };
    expect(st.dns.records).toBeGreaterThan(60);
    expect(st.dns.queries).toBeGreaterThan(10);
    expect(st.dns.upstreams).toEqual([`127.0.0.1:${failing.port}`, `127.0.0.1:${good.port}`]);
  });
});

describe("robustness", () => {
  test("fuzz: 100,000 random and mutated packets over UDP (and garbage over TCP); the server still answers correctly", async () => {
    const rand = seededRandom(0x2545f491);
    const seeds = [`echo.demo.${ZONE}`, `_http._tcp.db.demo.${ZONE}`, "10.1.96.10.in-addr.arpa", `many.demo.${ZONE}`].map((name, i) =>
      dnsPacket.encode({ type: "query", id: i, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: i === 1 ? "SRV" : i === 2 ? "PTR" : "A" }] }),
    );
    // Sent in batches of 100, each followed by a valid probe whose answer we
    // wait for: the server reads its socket in order, so by then it has
    // handled the batch (nothing is lost to a full receive buffer), and it
    // is checked to answer correctly all along.
    const probeName = `echo.demo.${ZONE}`;
    const probe = dnsPacket.encode({ type: "query", id: 0xabcd, questions: [{ name: probeName, type: "A" }] });
    const sock = createSocket("udp4");
    let probeWaiter: (() => void) | undefined;
    let probesAnswered = 0;
    let replies = 0;
    sock.on("message", (msg) => {
      replies++;
      try {
        const p = dnsPacket.decode(msg);
        if (p.id === 0xabcd && p.questions?.[0]?.name === probeName && (p.answers?.[0] as any)?.data === "10.96.1.10") {
          probesAnswered++;
          probeWaiter?.();
        }
      } catch {
        // a reply to a mangled packet; only probes are checked here
      }
    });
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
    let sent = 0;
    for (let batch = 0; batch < 1000; batch++) {
      for (let k = 0; k < 100; k++, sent++) {
        let pkt: Buffer;
        if (sent % 4 === 0) {
          pkt = Buffer.alloc(rand(300));
          for (let j = 0; j < pkt.length; j++) pkt[j] = rand(256);
        } else {
          pkt = Buffer.from(seeds[rand(seeds.length)]!);
          for (let n = 1 + rand(3); n > 0; n--) pkt[rand(pkt.length)] = rand(256);
          if (sent % 4 === 2) pkt = pkt.subarray(0, rand(pkt.length + 1));
        }
        sock.send(pkt, dnsPort, "127.0.0.1");
      }
      const answered = new Promise<void>((resolve) => (probeWaiter = resolve));
      sock.send(probe, dnsPort, "127.0.0.1");
      await Promise.race([answered, Bun.sleep(2000)]);
    }
    sock.close();
    expect(sent).toBe(100_000);
    expect(probesAnswered).toBe(1000);
    expect(replies).toBeGreaterThan(20_000);

    await new Promise<void>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: dnsPort }, () => {
        for (let i = 0; i < 200; i++) s.write(Buffer.from(Array.from({ length: rand(100) }, () => rand(256))));
        s.end(Buffer.from([0xff, 0xff, 1, 2, 3])); // a frame announced longer than what follows
      });
      s.on("error", () => resolve());
      s.on("close", () => resolve());
      s.resume();
    });

    expect(agent.exitCode).toBeNull();
    expect(rdata(await q([`echo.demo.${ZONE}`]), "A")).toEqual(["10.96.1.10"]);
    expect(rdata(await q(["+tcp", `_http._tcp.echo.demo.${ZONE}`, "SRV"]), "SRV")).toEqual([`0 100 80 echo.demo.${ZONE}.`]);
    const m = await (await fetch(`http://${admin}/metrics`)).text();
    expect(m).toMatch(/^edgemesh_dns_rejected_total\{reason="decode"\} [1-9]\d*$/m);
  }, 40_000);
});

test("a listen address already in use is a clear error, exit 1", async () => {
  const busy = createSocket("udp4");
  await new Promise<void>((r) => busy.bind(0, "127.0.0.1", () => r()));
  try {
    const t = tempConfigDir();
    const cfg = t.write(
      "agent.yaml",
      `nodeName: edge1\n${t.trust("edge1")}\npsk: psk\nadminListen: 127.0.0.1:${freePort()}\nagent:\n  metadata: {source: static}\n  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {listen: "127.0.0.1:${busy.address().port}", upstreamServers: [127.0.0.1]}\n`,
    );
    const p = Bun.spawn([await ensureBinary(), "agent", "--config", cfg], { stdout: "ignore", stderr: "pipe", timeout: 15_000 });
    const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect(code).toBe(1);
    expect(err).toContain(`cannot listen on 127.0.0.1:${busy.address().port}`);
  } finally {
    busy.close();
  }
}, 20_000);
