// Multiaddr helpers. We build and choose addresses ourselves instead of
// relying on libp2p's "public address" heuristics, which treat the private
// and CGNAT ranges real edge networks use as undialable (DESIGN §7).
import { multiaddr, type Multiaddr } from "@multiformats/multiaddr";
import { isIP } from "node:net";
import { parseHostPort } from "../config/net.ts";
import { cidrContains, ip4ToInt, type Cidr4 } from "../model/cidr.ts";

/** "1.2.3.4" and 5 from /ip4/1.2.3.4/tcp/5/..., or undefined (not an IP TCP address) */
export function tcpTarget(ma: Multiaddr | string): { host: string; port: number } | undefined {
  const m = /^\/(ip4|ip6)\/([^/]+)\/tcp\/(\d+)/.exec(ma.toString());
  return m ? { host: m[2]!, port: Number(m[3]) } : undefined;
}

export function tcpAddr(host: string, port: number): Multiaddr {
  const v = isIP(host);
  const proto = v === 4 ? "ip4" : v === 6 ? "ip6" : "dns";
  return multiaddr(`/${proto}/${host}/tcp/${port}`);
}

export function hostPortAddr(hp: string): Multiaddr {
  const p = parseHostPort(hp);
  if (!p) throw new Error(`expected host:port, got ${JSON.stringify(hp)}`);
  return tcpAddr(p.host, p.port);
}

export function isCircuit(ma: Multiaddr): boolean {
  return ma.toString().includes("/p2p-circuit");
}

/** the peer ID of the relay a circuit address goes through (".../p2p/RELAY/p2p-circuit/...") */
export function relayOf(ma: Multiaddr): string | undefined {
  return /\/p2p\/([^/]+)\/p2p-circuit/.exec(ma.toString())?.[1];
}

/**
 * how a connection reaches its peer: direct with the peer's IPv4 address, or
 * relayed with the relay's peer ID and IPv4 address (undefined for IPv6)
 */
export function originOf(conn: { remoteAddr: Multiaddr }): { path: "direct" | "relayed"; remoteIp?: string; relayPeer?: string; relayIp?: string } {
  const text = conn.remoteAddr.toString();
  const ip = /^\/ip4\/(\d+\.\d+\.\d+\.\d+)\//.exec(text)?.[1];
  if (isCircuit(conn.remoteAddr)) {
    const relayPeer = relayOf(conn.remoteAddr);
    return { path: "relayed", ...(relayPeer ? { relayPeer } : {}), ...(ip ? { relayIp: ip } : {}) };
  }
  return ip ? { path: "direct", remoteIp: ip } : { path: "direct" };
}

/** the circuit address of `target` through the relay at `relay` */
export function circuitAddr(relay: Multiaddr, relayPeer: string, targetPeer: string): Multiaddr {
  return multiaddr(`${relay.toString()}/p2p/${relayPeer}/p2p-circuit/p2p/${targetPeer}`);
}

/** "1.2.3.4:5" from a TCP multiaddr, for logs and status */
export function describeAddr(ma: Multiaddr): string {
  const s = ma.toString();
  const m = /^\/(ip4|ip6|dns4?|dns6)\/([^/]+)\/tcp\/(\d+)/.exec(s);
  if (!m) return s;
  const host = m[1] === "ip6" ? `[${m[2]}]` : m[2];
  return `${host}:${m[3]}${isCircuit(ma) ? " (relayed)" : ""}`;
}

/** whether a multiaddr's IPv4 address lies in one of `cidrs` */
export function inCidrs(ma: Multiaddr, cidrs: readonly Cidr4[]): boolean {
  const m = /^\/ip4\/([0-9.]+)\//.exec(ma.toString());
  const ip = m ? ip4ToInt(m[1]!) : undefined;
  return ip !== undefined && cidrs.some((c) => cidrContains(c, ip));
}
