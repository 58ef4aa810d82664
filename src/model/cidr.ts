// IPv4 prefixes for the pod network: parsed strictly (a network address with
// no host bits set, as Kubernetes writes Node.spec.podCIDRs), held as
// integers so a packet's addresses are checked without making strings.
import { z } from "zod";
import { ipFamily } from "./grammar.ts";

export interface Cidr4 {
  /** network address, host bits zero, as an unsigned 32-bit integer */
  readonly base: number;
  readonly len: number;
  /** canonical text, e.g. "10.244.1.0/24" */
  readonly text: string;
}

export function ip4ToInt(s: string): number | undefined {
  if (ipFamily(s) !== 4) return undefined;
  const [a, b, c, d] = s.split(".").map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

export function intToIp4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

const maskOf = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

/** "a.b.c.d/len" with no host bits set, else undefined */
export function parseCidr4(s: string): Cidr4 | undefined {
  const m = /^([0-9.]{7,15})\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const base = ip4ToInt(m[1]!);
  const len = Number(m[2]);
  if (base === undefined || len > 32 || String(len) !== m[2]) return undefined;
  if ((base & maskOf(len)) >>> 0 !== base) return undefined;
  return { base, len, text: `${m[1]}/${len}` };
}

export function cidrContains(c: Cidr4, ip: number): boolean {
  return ((ip & maskOf(c.len)) >>> 0) === c.base;
}

export function cidrsOverlap(a: Cidr4, b: Cidr4): boolean {
  const len = Math.min(a.len, b.len);
  return ((a.base & maskOf(len)) >>> 0) === ((b.base & maskOf(len)) >>> 0);
}

/** an IPv4 or IPv6 CIDR as Kubernetes accepts one (IPv6 is kept but not routed by the pod network yet) */
export const podCidr = z.string().refine((s) => parseCidr4(s) !== undefined || isCidr6(s), { message: "expected a CIDR with no host bits, e.g. 10.244.1.0/24" });

function isCidr6(s: string): boolean {
  const m = /^([0-9a-fA-F:]{2,39})\/(\d{1,3})$/.exec(s);
  return !!m && ipFamily(m[1]!) === 6 && Number(m[2]) <= 128;
}
