// The grammar of every value from the metadata source (and the config's static
// list) that reaches a listener, a DNS answer or a root command. Kubernetes'
// own validation rules, applied again here: the source may be an impersonated
// MetaServer (plain HTTP on loopback), so nothing it says is trusted.
import { isIP } from "node:net";
import { z } from "zod";

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
// hex, colons and an embedded dotted quad; no zone ("%eth0"), no spaces
const IPV6_CHARS = /^[0-9a-fA-F:.]{2,45}$/;

/** 4 or 6 for a strictly written address (no leading zeros, no zone), else 0 */
export function ipFamily(s: string): 0 | 4 | 6 {
  if (IPV4.test(s)) return 4;
  if (IPV6_CHARS.test(s) && isIP(s) === 6) return 6;
  return 0;
}

function v4Octets(s: string): number[] {
  return s.split(".").map(Number);
}

/** the IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), if any */
function mappedV4(s: string): string | undefined {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s);
  return m && IPV4.test(m[1]!) ? m[1] : undefined;
}

/** the eight 16-bit groups of a valid IPv6 address */
function v6Groups(s: string): number[] {
  let text = s.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = v4Octets(dotted[1]!) as [number, number, number, number];
    text = text.slice(0, -dotted[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const parse = (part: string | undefined) => (part ? part.split(":").map((g) => parseInt(g, 16)) : []);
  const h = parse(head);
  const t = parse(tail);
  return tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
}

/**
 * Why an address cannot be a service's or a backend's: loopback, unspecified
 * ("this network"), link-local (cloud metadata lives there), multicast or
 * broadcast. undefined when it can.
 */
export function reservedUse(ip: string): string | undefined {
  const fam = ipFamily(ip);
  if (fam === 0) return "not an IP address";
  const v4 = fam === 4 ? ip : mappedV4(ip);
  if (v4) {
    const [a, b] = v4Octets(v4) as [number, number];
    if (a === 0) return "unspecified";
    if (a === 127) return "loopback";
    if (a === 169 && b === 254) return "link-local";
    if (a >= 224 && a <= 239) return "multicast";
    if (v4 === "255.255.255.255") return "broadcast";
    return undefined;
  }
  const g = v6Groups(ip);
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeroTo(8)) return "unspecified";
  if (zeroTo(7) && g[7] === 1) return "loopback";
  if ((g[0]! & 0xffc0) === 0xfe80) return "link-local";
  if ((g[0]! & 0xff00) === 0xff00) return "multicast";
  return undefined;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// IANA service name: ≤ 15, lowercase alphanumerics and single inner hyphens, at least one letter
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-)){0,13}[a-z0-9]?$/;

export const isDnsLabel = (s: string) => s.length <= 63 && DNS_LABEL.test(s);
export const isDnsSubdomain = (s: string) => s.length <= 253 && DNS_SUBDOMAIN.test(s);
export const isIanaSvcName = (s: string) => s.length <= 15 && IANA_SVC_NAME.test(s) && !s.endsWith("-");

// zod pieces shared by the Kubernetes object schemas and the config file
export const portNumber = z.number().int().min(1).max(65535);
export const dnsLabel = z.string().refine(isDnsLabel, { message: "expected a DNS-1123 label (a-z, 0-9, '-', at most 63)" });
export const dnsSubdomain = z.string().refine(isDnsSubdomain, { message: "expected a DNS-1123 subdomain (a-z, 0-9, '-', '.', at most 253)" });
/** a port's name: "" or a DNS label */
export const portName = z.string().refine((s) => s === "" || isDnsLabel(s), { message: "expected a DNS-1123 label or nothing" });
/** a named targetPort: an IANA service name */
export const ianaSvcName = z.string().refine(isIanaSvcName, { message: "expected an IANA service name (a-z, 0-9, '-', at most 15, one letter)" });
export const strictIP = z.string().refine((s) => ipFamily(s) !== 0, { message: "expected an IPv4 or IPv6 address, strictly written" });
/** an address traffic may be sent to on a service's behalf */
export const serviceableIP = z.string().superRefine((s, ctx) => {
  const why = reservedUse(s);
  if (why) ctx.addIssue({ code: "custom", message: why === "not an IP address" ? "expected an IPv4 or IPv6 address, strictly written" : `${why} address not allowed` });
});
/** ExternalName target: a DNS subdomain, optionally fully qualified */
export const externalName = z.string().refine((s) => s === "" || isDnsSubdomain(s.endsWith(".") ? s.slice(0, -1) : s), {
  message: "expected a DNS name",
});
