// The cluster zone as an index from owner name to records, built from one
// service snapshot (Kubernetes DNS specification, schema 1.1.0). Rebuilt on
// every snapshot: a few thousand services take milliseconds, and a rebuilt
// index can never hold a record of a service that is gone.
import { isIP } from "node:net";
import type { Answer } from "dns-packet";
import type { Endpoint, Service, ServiceSnapshot } from "../../model/index.ts";

export const SCHEMA_VERSION = "1.1.0";

export interface Zone {
  /** the cluster domain, lowercase, no trailing dot */
  domain: string;
  ttl: number;
  /** owner name (lowercase) → records at that name */
  records: Map<string, Answer[]>;
  /** names that exist only because a longer name ends in them (`demo.svc.<zone>`): NODATA, not NXDOMAIN */
  emptyNonTerminals: Set<string>;
  /** reverse names (in-addr.arpa / ip6.arpa) → PTR records, kept apart: they are not under the zone */
  reverse: Map<string, Answer[]>;
  soa: Answer;
  generation: number;
  /** records in the index, for /status */
  size: number;
}

export function normalizeName(name: string): string {
  return name.replace(/\.$/, "").toLowerCase();
}

/** `10.1.0.1` → `1.0.1.10.in-addr.arpa`; IPv6 in nibble form under ip6.arpa */
export function reverseName(ip: string): string | undefined {
  const v = isIP(ip);
  if (v === 4) return `${ip.split(".").reverse().join(".")}.in-addr.arpa`;
  if (v !== 6) return undefined;
  return `${expandV6(ip).split("").reverse().join(".")}.ip6.arpa`;
}

/** 32 hex digits of an IPv6 address */
function expandV6(ip: string): string {
  let text = ip.toLowerCase();
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split(".").map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => g.padStart(4, "0")).join("");
}

/** a stable label for an endpoint without a hostname, as CoreDNS does: 10.1.0.1 → 10-1-0-1 */
export function endpointLabel(ep: Endpoint): string {
  return ep.hostname ? ep.hostname.toLowerCase() : ep.ip.toLowerCase().replace(/[.:]/g, "-");
}

function addressRecord(name: string, ip: string, ttl: number): Answer | undefined {
  const v = isIP(ip);
  if (v === 4) return { name, type: "A", class: "IN", ttl, data: ip };
  if (v === 6) return { name, type: "AAAA", class: "IN", ttl, data: ip };
  return undefined;
}

export function buildZone(snapshot: ServiceSnapshot | undefined, clusterDomain: string, ttl: number): Zone {
  const domain = normalizeName(clusterDomain);
  const records = new Map<string, Answer[]>();
  const reverse = new Map<string, Answer[]>();
  let size = 0;
  const add = (map: Map<string, Answer[]>, rr: Answer | undefined) => {
    if (!rr) return;
    const list = map.get(rr.name);
    if (list) list.push(rr);
    else map.set(rr.name, [rr]);
    size++;
  };
  const ptr = (ip: string, target: string) => {
    const name = reverseName(ip);
    if (name) add(reverse, { name, type: "PTR", class: "IN", ttl, data: target });
  };

  add(records, { name: `dns-version.${domain}`, type: "TXT", class: "IN", ttl, data: SCHEMA_VERSION });
  for (const s of snapshot?.services ?? []) addService(s);

  function addService(s: Service): void {
    const svcName = `${s.name}.${s.namespace}.svc.${domain}`.toLowerCase();
    if (s.type === "ExternalName") {
      if (s.externalName) add(records, { name: svcName, type: "CNAME", class: "IN", ttl, data: normalizeName(s.externalName) });
      return;
    }
    if (!s.headless) {
      for (const ip of s.clusterIPs) {
        add(records, addressRecord(svcName, ip, ttl));
        ptr(ip, svcName);
      }
      for (const p of s.ports) {
        if (!p.name) continue;
        add(records, { name: srvName(p.name, p.protocol, svcName), type: "SRV", class: "IN", ttl, data: { priority: 0, weight: 100, port: p.port, target: svcName } });
      }
      return;
    }
    // Headless: the endpoints themselves, only while ready.
    const ready = s.endpoints.filter((e) => e.ready && isIP(e.ip) !== 0);
    const weight = ready.length ? Math.max(1, Math.floor(100 / ready.length)) : 0;
    for (const ep of ready) {
      const host = `${endpointLabel(ep)}.${svcName}`;
      add(records, addressRecord(svcName, ep.ip, ttl));
      add(records, addressRecord(host, ep.ip, ttl));
      ptr(ep.ip, host);
      for (const p of s.ports) {
        if (!p.name) continue;
        const epPort = ep.ports.find((x) => x.name === p.name && x.protocol === p.protocol)?.port ?? (typeof p.targetPort === "number" ? p.targetPort : p.port);
        add(records, { name: srvName(p.name, p.protocol, svcName), type: "SRV", class: "IN", ttl, data: { priority: 0, weight, port: epPort, target: host } });
      }
    }
  }

  const emptyNonTerminals = new Set<string>([domain]);
  for (const name of records.keys()) {
    // every proper suffix of an owner name, down to the zone apex
    let n = name;
    for (let i = n.indexOf("."); i >= 0 && n.length > domain.length; i = n.indexOf(".")) {
      n = n.slice(i + 1);
      if (n.length < domain.length) break;
      if (!records.has(n)) emptyNonTerminals.add(n);
    }
  }
  const soa: Answer = {
    name: domain,
    type: "SOA",
    class: "IN",
    ttl,
    // minimum is the negative-caching TTL (RFC 2308): as short as positive answers
    data: { mname: `ns.dns.${domain}`, rname: `hostmaster.${domain}`, serial: (snapshot?.generation ?? 0) >>> 0, refresh: 7200, retry: 1800, expire: 86400, minimum: ttl },
  };
  return { domain, ttl, records, emptyNonTerminals, reverse, soa, generation: snapshot?.generation ?? -1, size };
}

function srvName(portName: string, protocol: string, svcName: string): string {
  return `_${portName.toLowerCase()}._${protocol.toLowerCase()}.${svcName}`;
}
