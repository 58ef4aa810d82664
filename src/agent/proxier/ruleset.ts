// The iptables nat ruleset, as a pure function of the service table and the
// ports our listeners got. Applied whole with `iptables-restore --noflush`
// at start and whenever our chains may differ from what we left (declaring
// our chains flushes and refills only them, atomically; no other chain's
// rules are touched); otherwise as a delta of the rules that changed, also
// one atomic transaction.
import type { Protocol, Service } from "../../model/index.ts";
import type { ListenerEntry, ListenerTable } from "../../model/listeners.ts";
import { dnatRuleLine } from "./commands.ts";

export const CHAIN_PREROUTING = "EDGEMESH-PREROUTING";
export const CHAIN_OUTPUT = "EDGEMESH-OUTPUT";
/**
 * The DNAT rules, once: both entry chains jump here. One copy instead of one
 * per entry chain halves what every update hands to iptables-restore.
 */
export const CHAIN_SERVICES = "EDGEMESH-SERVICES";
/** filter INPUT guard: only this host and its pods reach the bridge IP (commands.ts guardRuleset) */
export const CHAIN_GUARD = "EDGEMESH-INPUT";

/** one intercepted service port: ClusterIP:port/proto → bridgeIP:listenPort */
export interface Interception {
  service: string; // ns/name:portName, for the rule comment
  clusterIP: string;
  port: number;
  protocol: Protocol;
  listenPort: number;
}

/** the service ports we intercept: ClusterIP services (not headless, not ExternalName), IPv4 */
export function interceptions(services: Service[], listenPortOf: (key: string) => number | undefined): Interception[] {
  const out: Interception[] = [];
  for (const s of services) {
    if (s.headless || s.type !== "ClusterIP") continue;
    for (const ip of s.clusterIPs) {
      if (ip.includes(":")) continue; // IPv6 ClusterIPs: ip6tables is not handled yet
      for (const p of s.ports) {
        const key = listenerKey(s, p.port, p.protocol);
        const listenPort = listenPortOf(key);
        if (listenPort === undefined) continue;
        out.push({ service: `${s.namespace}/${s.name}:${p.name || p.port}`, clusterIP: ip, port: p.port, protocol: p.protocol, listenPort });
      }
    }
  }
  return out;
}

export function listenerKey(s: { namespace: string; name: string }, port: number, protocol: Protocol): string {
  return `${s.namespace}/${s.name}:${port}/${protocol}`;
}

/** iptables-restore input for the nat table: our chains, whole (an entry outside the grammar of commands.ts gets no rule) */
export function natRuleset(list: Interception[], bridgeIP: string): string {
  return natRulesetCounted(list, bridgeIP).text;
}

function natRulesetCounted(list: Interception[], bridgeIP: string): { text: string; rules: number } {
  const sorted = [...list].sort((a, b) => (a.clusterIP === b.clusterIP ? a.port - b.port || a.protocol.localeCompare(b.protocol) : a.clusterIP.localeCompare(b.clusterIP)));
  const lines = [
    "*nat",
    `:${CHAIN_PREROUTING} - [0:0]`,
    `:${CHAIN_OUTPUT} - [0:0]`,
    `:${CHAIN_SERVICES} - [0:0]`,
    `-A ${CHAIN_PREROUTING} -j ${CHAIN_SERVICES}`,
    `-A ${CHAIN_OUTPUT} -j ${CHAIN_SERVICES}`,
  ];
  let rules = 0;
  for (const i of sorted) {
    const line = dnatRuleLine({ chain: CHAIN_SERVICES, clusterIP: i.clusterIP, port: i.port, protocol: i.protocol, comment: i.service, bridgeIP, listenPort: i.listenPort });
    if (line === undefined) continue;
    lines.push(line);
    rules++;
  }
  lines.push("COMMIT", "");
  return { text: lines.join("\n"), rules };
}

/** the interceptions a listener table asks for: each IPv4 ClusterIP of each entry */
export function interceptionsFromListeners(entries: ReadonlyArray<ListenerEntry>): Interception[] {
  const out: Interception[] = [];
  for (const e of entries) {
    for (const ip of e.clusterIPs) {
      if (ip.includes(":")) continue; // as above: no ip6tables yet
      out.push({ service: `${e.service}:${e.portName || e.port}`, clusterIP: ip, port: e.port, protocol: e.protocol, listenPort: e.listenPort });
    }
  }
  return out;
}

/** iptables-restore input for a whole listener table */
export function listenerRuleset(table: ListenerTable): { text: string; interceptions: number } {
  const { text, rules } = natRulesetCounted(interceptionsFromListeners(table.entries), table.bridgeIP);
  return { text, interceptions: rules };
}

/**
 * iptables-restore input that turns the applied ruleset into `next` by
 * deleting and appending only the rules that differ, in one transaction. No
 * chain is declared, so nothing is flushed: a change to one service hands
 * iptables a few lines instead of every service's (the DNAT rules match
 * distinct ClusterIP:port/protocol, so their order does not matter).
 * "" when nothing differs; undefined when the chain layout itself differs
 * and the whole ruleset must be applied.
 */
export function natRulesetDelta(applied: string, next: string): string | undefined {
  const split = (text: string) => {
    const rules = new Set<string>();
    const layout: string[] = [];
    for (const l of text.split("\n")) {
      if (l.startsWith(`-A ${CHAIN_SERVICES} `)) rules.add(l);
      else layout.push(l);
    }
    return { rules, layout: layout.join("\n") };
  };
  const a = split(applied);
  const b = split(next);
  if (a.layout !== b.layout) return undefined;
  const ops: string[] = [];
  for (const r of a.rules) if (!b.rules.has(r)) ops.push(`-D${r.slice(2)}`);
  for (const r of b.rules) if (!a.rules.has(r)) ops.push(r);
  return ops.length ? ["*nat", ...ops, "COMMIT", ""].join("\n") : "";
}
