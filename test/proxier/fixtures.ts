// Listener tables and pre-existing "kube-proxy" rules for the proxier tests.
import type { ListenerEntry, ListenerTable } from "../../src/model/listeners.ts";

export const BRIDGE_IP = "169.254.96.16";

export function table(generation: number, entries: Array<Partial<ListenerEntry> & { clusterIPs: string[]; port: number; listenPort: number }>): ListenerTable {
  return {
    bridgeIP: BRIDGE_IP,
    generation,
    entries: entries.map((e, i) => ({ service: `demo/svc${i}`, portName: `p${e.port}`, protocol: "TCP", ...e })),
  };
}

/** n services with two ports each (TCP 80, UDP 53), ClusterIPs from 10.96.0.0/16 */
export function bigTable(generation: number, n: number): ListenerTable {
  const entries: ListenerEntry[] = [];
  for (let i = 0; i < n; i++) {
    const ip = `10.96.${(i >> 8) & 255}.${(i & 255) + 0}`;
    entries.push({ service: `bench/svc${i}`, portName: "http", clusterIPs: [ip], port: 80, protocol: "TCP", listenPort: 20000 + 2 * i });
    entries.push({ service: `bench/svc${i}`, portName: "dns", clusterIPs: [ip], port: 53, protocol: "UDP", listenPort: 20001 + 2 * i });
  }
  return { bridgeIP: BRIDGE_IP, generation, entries };
}

/** what kube-proxy (and a CNI) might already have in nat: we must leave it byte-for-byte alone */
export const FOREIGN_NAT = [
  "*nat",
  ":KUBE-SERVICES - [0:0]",
  ":KUBE-MARK-MASQ - [0:0]",
  '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  "-A OUTPUT -d 192.0.2.1/32 -j ACCEPT",
  "-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE",
  "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
  "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-MARK-MASQ",
  "COMMIT",
  "",
].join("\n");

/** a save listing without anything of ours */
export const foreign = (save: string[]) => save.filter((l) => !l.includes("EDGEMESH"));
export const ours = (save: string[]) => save.filter((l) => l.includes("EDGEMESH"));
/** the rules of a builtin chain, in order */
export const chainRules = (save: string[], chain: string) => save.filter((l) => l.startsWith(`-A ${chain} `));
