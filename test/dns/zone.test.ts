// The cluster zone's answers as pure functions of (snapshot, question),
// following the Kubernetes DNS specification.
import { describe, expect, test } from "bun:test";
import { answerFromZone, RCODE } from "../../src/agent/dns/answer.ts";
import { buildZone, reverseName } from "../../src/agent/dns/zone.ts";
import type { Endpoint, Service, ServiceSnapshot } from "../../src/model/index.ts";
import { service } from "../util/service.ts";

const ep = (ip: string, extra: Partial<Endpoint> = {}): Endpoint => ({ ip, nodeName: "edge2", ready: true, hostname: "", ports: [{ name: "http", port: 8080, protocol: "TCP" }], ...extra });
const svc = (name: string, extra: Partial<Service> = {}): Service =>
  service({ name, clusterIPs: ["10.96.0.10"], ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }], endpoints: [ep("10.1.0.1")], ...extra });

const snapshot: ServiceSnapshot = {
  generation: 7,
  services: [
    svc("echo"),
    svc("dual", { clusterIPs: ["10.96.0.11", "fd00::11"], ports: [{ name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }, { name: "", port: 81, protocol: "TCP", targetPort: 81 }] }),
    svc("db", {
      clusterIPs: [],
      headless: true,
      endpoints: [ep("10.1.0.5", { hostname: "db-0" }), ep("10.1.0.6", { hostname: "db-1", ports: [{ name: "http", port: 9090, protocol: "TCP" }] }), ep("10.1.0.7", { ready: false, hostname: "db-2" })],
    }),
    svc("anon", { clusterIPs: [], headless: true, endpoints: [ep("10.1.0.8")] }),
    svc("idle", { clusterIPs: [], headless: true, endpoints: [ep("10.1.0.9", { ready: false })] }),
    svc("ext", { type: "ExternalName", clusterIPs: [], externalName: "example.org.", ports: [] }),
    svc("alias", { type: "ExternalName", clusterIPs: [], externalName: "echo.demo.svc.cluster.local", ports: [] }),
  ],
};
const zone = buildZone(snapshot, "cluster.local", 5);
const ask = (name: string, type: string) => answerFromZone(zone, name, type);
const data = (name: string, type: string) => (ask(name, type)?.answers ?? []).map((a) => (a as { data: unknown }).data);

describe("cluster zone answers", () => {
  test("A and AAAA of a ClusterIP service, with the configured TTL, any letter case", () => {
    expect(data("echo.demo.svc.cluster.local", "A")).toEqual(["10.96.0.10"]);
    expect(data("ECHO.Demo.SVC.cluster.LOCAL.", "A")).toEqual(["10.96.0.10"]);
    expect(ask("echo.demo.svc.cluster.local", "A")).toMatchObject({ rcode: RCODE.NOERROR, aa: true, answers: [{ ttl: 5 }] });
    expect(data("dual.demo.svc.cluster.local", "A")).toEqual(["10.96.0.11"]);
    expect(data("dual.demo.svc.cluster.local", "AAAA")).toEqual(["fd00::11"]);
  });

  test("headless: one record per ready endpoint; endpoints by hostname; NXDOMAIN when none is ready", () => {
    expect(data("db.demo.svc.cluster.local", "A").sort()).toEqual(["10.1.0.5", "10.1.0.6"]);
    expect(data("db-0.db.demo.svc.cluster.local", "A")).toEqual(["10.1.0.5"]);
    expect(ask("db-2.db.demo.svc.cluster.local", "A")?.rcode).toBe(RCODE.NXDOMAIN); // not ready
    expect(data("10-1-0-8.anon.demo.svc.cluster.local", "A")).toEqual(["10.1.0.8"]);
    const idle = ask("idle.demo.svc.cluster.local", "A")!;
    expect(idle.rcode).toBe(RCODE.NXDOMAIN);
    expect(idle.authorities[0]?.type).toBe("SOA");
  });

  test("SRV for named ports: the service for ClusterIP, each ready endpoint for headless, with addresses in additional", () => {
    const srv = ask("_http._tcp.echo.demo.svc.cluster.local", "SRV")!;
    expect(srv.answers.map((a) => (a as any).data)).toEqual([{ priority: 0, weight: 100, port: 80, target: "echo.demo.svc.cluster.local" }]);
    expect(srv.additionals.map((a) => (a as any).data)).toEqual(["10.96.0.10"]);
    expect(data("_dns._udp.dual.demo.svc.cluster.local", "SRV")).toEqual([{ priority: 0, weight: 100, port: 53, target: "dual.demo.svc.cluster.local" }]);
    const hs = ask("_http._tcp.db.demo.svc.cluster.local", "SRV")!;
    expect(hs.answers.map((a) => (a as any).data).sort((x: any, y: any) => x.port - y.port)).toEqual([
      { priority: 0, weight: 50, port: 8080, target: "db-0.db.demo.svc.cluster.local" },
      { priority: 0, weight: 50, port: 9090, target: "db-1.db.demo.svc.cluster.local" },
    ]);
    expect(hs.additionals.map((a) => (a as any).data).sort()).toEqual(["10.1.0.5", "10.1.0.6"]);
    // the unnamed port has no SRV; the protocol must match
    expect(ask("_http._udp.echo.demo.svc.cluster.local", "SRV")?.rcode).toBe(RCODE.NXDOMAIN);
  });

  test("PTR for ClusterIPs and headless endpoints, v4 and v6; other reverse names are not ours", () => {
    expect(data("10.0.96.10.in-addr.arpa", "PTR")).toEqual(["echo.demo.svc.cluster.local"]);
    expect(data(reverseName("10.1.0.5")!, "PTR")).toEqual(["db-0.db.demo.svc.cluster.local"]);
    expect(data(reverseName("10.1.0.8")!, "PTR")).toEqual(["10-1-0-8.anon.demo.svc.cluster.local"]);
    expect(reverseName("fd00::11")).toBe("1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa");
    expect(data(reverseName("fd00::11")!, "PTR")).toEqual(["dual.demo.svc.cluster.local"]);
    expect(ask("1.2.0.192.in-addr.arpa", "PTR")).toBeUndefined();
  });

  test("ExternalName is a CNAME; a target inside the zone is followed, one outside is left to the resolver", () => {
    const ext = ask("ext.demo.svc.cluster.local", "A")!;
    expect(ext.answers).toMatchObject([{ type: "CNAME", data: "example.org" }]);
    expect(ext.chase).toBe("example.org");
    expect(data("ext.demo.svc.cluster.local", "CNAME")).toEqual(["example.org"]);
    const alias = ask("alias.demo.svc.cluster.local", "A")!;
    expect(alias.answers.map((a) => a.type)).toEqual(["CNAME", "A"]);
    expect(alias.chase).toBeUndefined();
  });

  test("dns-version TXT, SOA at the apex", () => {
    expect(data("dns-version.cluster.local", "TXT")).toEqual(["1.1.0"]);
    expect(ask("cluster.local", "SOA")?.answers[0]?.type).toBe("SOA");
  });

  test("unknown name → NXDOMAIN with SOA; known name without that type, or a name on the way to one → NODATA with SOA", () => {
    for (const name of ["nope.demo.svc.cluster.local", "echo.other.svc.cluster.local", "echo.demo.cluster.local", "x.echo.demo.svc.cluster.local"]) {
      const r = ask(name, "A")!;
      expect({ name, rcode: r.rcode, answers: r.answers.length }).toEqual({ name, rcode: RCODE.NXDOMAIN, answers: 0 });
      expect(r.authorities.map((a) => a.type)).toEqual(["SOA"]);
    }
    for (const [name, type] of [
      ["echo.demo.svc.cluster.local", "AAAA"],
      ["echo.demo.svc.cluster.local", "TXT"],
      ["demo.svc.cluster.local", "A"],
      ["svc.cluster.local", "A"],
      ["cluster.local", "A"],
      ["_tcp.echo.demo.svc.cluster.local", "SRV"],
    ]) {
      const r = ask(name!, type!)!;
      expect({ name, rcode: r.rcode, answers: r.answers.length }).toEqual({ name, rcode: RCODE.NOERROR, answers: 0 });
      expect(r.authorities.map((a) => a.type)).toEqual(["SOA"]);
      expect((r.authorities[0] as any).data.minimum).toBe(5);
    }
  });

  test("names outside the zone are not ours; before the first snapshot, ours get SERVFAIL", () => {
    expect(ask("example.org", "A")).toBeUndefined();
    expect(ask("cluster.local.evil.org", "A")).toBeUndefined();
    const empty = buildZone(undefined, "cluster.local", 5);
    expect(answerFromZone(empty, "echo.demo.svc.cluster.local", "A")?.rcode).toBe(RCODE.SERVFAIL);
    expect(answerFromZone(empty, "example.org", "A")).toBeUndefined();
  });

  test("another cluster domain", () => {
    const z = buildZone(snapshot, "Edge.Mesh", 30);
    expect(answerFromZone(z, "echo.demo.svc.edge.mesh", "A")?.answers).toMatchObject([{ data: "10.96.0.10", ttl: 30 }]);
    expect(answerFromZone(z, "echo.demo.svc.cluster.local", "A")).toBeUndefined();
  });
});
