// Where names outside the cluster go: agent.dns.upstreamServers, or else the
// nameservers of /etc/resolv.conf as they were at start. Our own listen
// address is left out, so pointing the host's resolv.conf at us makes no loop.
import { isIP, parseHostPort, type HostPort } from "../../config/net.ts";

export function parseUpstream(s: string): HostPort | undefined {
  if (isIP(s)) return { host: s, port: 53 };
  const hp = parseHostPort(s);
  return hp && isIP(hp.host) ? hp : undefined;
}

/** `nameserver` lines of a resolv.conf text (scope ids such as %eth0 dropped) */
export function resolvConfNameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const ip = m[1]!.replace(/%.*$/, "");
    if (isIP(ip)) out.push(ip);
  }
  return out;
}

const sameAddress = (a: HostPort, b: HostPort) => a.port === b.port && a.host.toLowerCase() === b.host.toLowerCase();

export interface UpstreamChoice {
  upstreams: HostPort[];
  source: "config" | "resolv.conf";
  /** entries left out because they are us */
  skipped: string[];
}

export function chooseUpstreams(configured: string[], resolvConf: string | undefined, listen: HostPort): UpstreamChoice {
  const fromConfig = configured.length > 0;
  const candidates = fromConfig ? configured : resolvConfNameservers(resolvConf ?? "");
  const upstreams: HostPort[] = [];
  const skipped: string[] = [];
  for (const c of candidates) {
    const hp = parseUpstream(c);
    if (!hp) continue;
    if (sameAddress(hp, listen)) skipped.push(c);
    else if (!upstreams.some((u) => sameAddress(u, hp))) upstreams.push(hp);
  }
  return { upstreams, source: fromConfig ? "config" : "resolv.conf", skipped };
}

export function formatUpstream(u: HostPort): string {
  return isIP(u.host) === 6 ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}
