// The only place that writes text for root commands (`iptables-restore`
// input, `ip -batch` lines). Every value is checked against its grammar here
// again, whatever validated it before: a line is built from an IPv4 address
// in dotted-quad form, a port number, a known protocol, a device name and a
// comment of plain characters, or it is not built at all. A refused entry
// costs only its own line; the others still go out.
import { ipFamily } from "../../model/grammar.ts";
import type { Protocol } from "../../model/index.ts";

const DEVICE = /^[A-Za-z0-9_.-]{1,15}$/;
const CHAIN = /^[A-Z0-9-]{1,28}$/;
const COMMENT_CHARS = /[^A-Za-z0-9./:_-]/g;

export const isIPv4 = (s: unknown): s is string => typeof s === "string" && ipFamily(s) === 4;
export const isPort = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535;
export const isDeviceName = (s: unknown): s is string => typeof s === "string" && DEVICE.test(s) && s !== "." && s !== "..";
const isProtocol = (p: unknown): p is Protocol => p === "TCP" || p === "UDP";

/** a rule comment: only characters that need no quoting, at most 200 */
export function commentText(s: string): string {
  return s.replace(COMMENT_CHARS, "_").slice(0, 200);
}

export interface DnatRule {
  chain: string;
  clusterIP: string;
  port: number;
  protocol: Protocol;
  comment: string;
  bridgeIP: string;
  listenPort: number;
}

/** `-A CHAIN … -j DNAT` for one service port, or undefined when a value is outside its grammar */
export function dnatRuleLine(r: DnatRule): string | undefined {
  if (!CHAIN.test(r.chain) || !isIPv4(r.clusterIP) || !isPort(r.port) || !isProtocol(r.protocol) || !isIPv4(r.bridgeIP) || !isPort(r.listenPort)) return undefined;
  const proto = r.protocol.toLowerCase();
  return `-A ${r.chain} -d ${r.clusterIP}/32 -p ${proto} -m ${proto} --dport ${r.port} -m comment --comment "${commentText(r.comment)}" -j DNAT --to-destination ${r.bridgeIP}:${r.listenPort}`;
}

export type RouteOp = "add" | "del" | "get";

/** one `ip -batch` line for a host route of ours, or undefined when a value is outside its grammar */
export function routeLine(op: RouteOp, ip: string, device: string, proto: number): string | undefined {
  if (!isIPv4(ip) || !isDeviceName(device) || !Number.isInteger(proto) || proto < 1 || proto > 255) return undefined;
  return op === "get" ? `route get ${ip}` : `route ${op} ${ip}/32 dev ${device} proto ${proto}`;
}

export interface PodSources {
  interfaces: readonly string[];
  cidrs: readonly string[];
}

const IFACE_PATTERN = /^[A-Za-z0-9_.-]{1,15}\+?$/;
const isCidr4 = (s: string) => {
  const [ip, len, more] = s.split("/");
  return more === undefined && isIPv4(ip) && /^\d{1,2}$/.test(len ?? "") && Number(len) <= 32;
};

/**
 * iptables-restore input for the filter table: our INPUT guard, whole. What
 * reaches the bridge IP (DNAT included: a ClusterIP's traffic arrives there)
 * is accepted from this host (lo), as replies, and from pod sources; anything
 * else is dropped, so LAN neighbours get no DNS, service or SOCKS5. A pod
 * source outside its grammar gets no line (and so no access).
 */
export function guardRuleset(chain: string, bridgeIP: string, pods: PodSources): string {
  if (!CHAIN.test(chain) || !isIPv4(bridgeIP)) throw new Error("guard: chain or bridge IP outside the command grammar");
  const lines = [
    "*filter",
    `:${chain} - [0:0]`,
    `-A ${chain} ! -d ${bridgeIP}/32 -j RETURN`,
    `-A ${chain} -i lo -j RETURN`,
    `-A ${chain} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN`,
  ];
  for (const i of pods.interfaces) if (IFACE_PATTERN.test(i)) lines.push(`-A ${chain} -i ${i} -j RETURN`);
  for (const c of pods.cidrs) if (isCidr4(c)) lines.push(`-A ${chain} -s ${c} -j RETURN`);
  lines.push(`-A ${chain} -m comment --comment "edgemesh: only this host and its pods" -j DROP`, "COMMIT", "");
  return lines.join("\n");
}

/**
 * ICMP "unreachable" codes a NAT gateway or firewall answers an unsolicited
 * SYN with (REJECT's port-unreachable default, host-unreachable, and the
 * admin-prohibited family). Not "fragmentation needed" (3/4): path MTU
 * discovery needs it.
 */
export const PUNCH_ICMP_CODES = ["3/1", "3/3", "3/9", "3/10", "3/13"] as const;

/**
 * iptables-restore input for the filter table: the hole-punch chain, whole.
 * It drops ICMP unreachables about TCP from our tunnel port (conntrack:
 * RELATED to an entry whose original source port is ours). Not only for
 * entries without a reply: a restarted agent punching the same 4-tuple again
 * meets its old entry, still "seen reply" after a close its NAT never passed,
 * and an established socket takes these errors as soft anyway. One from the far
 * gateway would end our SYN_SENT socket (Linux treats every ICMP error in
 * SYN_SENT as fatal), and the SYN sent again in its place carries a new ISN
 * that our own NAT's conntrack, still holding the first one, may refuse once
 * the peer's SYN has arrived. Dropped, our socket stays in SYN_SENT, and the
 * peer's SYN meets it: a simultaneous open, as with gateways that drop.
 */
export function punchIcmpRuleset(chain: string, port: number): string {
  if (!CHAIN.test(chain) || !isPort(port)) throw new Error("punch filter: chain or port outside the command grammar");
  const lines = ["*filter", `:${chain} - [0:0]`];
  for (const code of PUNCH_ICMP_CODES) {
    lines.push(`-A ${chain} -p icmp -m icmp --icmp-type ${code} -m conntrack --ctstate RELATED --ctproto tcp --ctorigsrcport ${port} -m comment --comment "edgemesh: hole punch attempt refused by a gateway" -j DROP`);
  }
  lines.push("COMMIT", "");
  return lines.join("\n");
}

/** rtnetlink protocol id of the pod network's routes (next to the proxier's 96) */
export const PODNET_ROUTE_PROTO = 97;

/** `ip -batch` line routing a peer's pod CIDR into our TUN, or undefined when a value is outside its grammar */
export function podRouteLine(op: "replace" | "del", cidr: string, device: string, src?: string): string | undefined {
  if (!isCidr4(cidr) || !isDeviceName(device) || (src !== undefined && !isIPv4(src))) return undefined;
  return `route ${op} ${cidr} dev ${device} proto ${PODNET_ROUTE_PROTO}${src && op === "replace" ? ` src ${src}` : ""}`;
}

/**
 * iptables-restore input for the pod network's chains, whole: filter FORWARD
 * accepts what goes into and comes out of the TUN (packets from peers were
 * checked by the agent; a host with FORWARD policy DROP, as Docker leaves it,
 * would lose them), and mangle POSTROUTING clamps the MSS of TCP SYNs into
 * the TUN to its MTU, so pods with a 1500-byte MTU never send what does not fit.
 */
export function podnetRuleset(filterChain: string, mangleChain: string, device: string): string {
  if (!CHAIN.test(filterChain) || !CHAIN.test(mangleChain) || !isDeviceName(device)) throw new Error("pod network: chain or device outside the command grammar");
  return [
    "*filter",
    `:${filterChain} - [0:0]`,
    `-A ${filterChain} -i ${device} -m comment --comment "edgemesh: pod network from peers" -j ACCEPT`,
    `-A ${filterChain} -o ${device} -m comment --comment "edgemesh: pod network to peers" -j ACCEPT`,
    "COMMIT",
    "*mangle",
    `:${mangleChain} - [0:0]`,
    `-A ${mangleChain} -o ${device} -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "edgemesh: pod network MSS" -j TCPMSS --clamp-mss-to-pmtu`,
    "COMMIT",
    "",
  ].join("\n");
}
