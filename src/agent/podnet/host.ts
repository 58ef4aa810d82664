// The host side of the pod network: the TUN's MTU and state, the routes of
// other nodes' pod CIDRs into it, IP forwarding, and the iptables chains
// (FORWARD accept, MSS clamp). Every line goes through commands.ts's grammar.
// Routes carry their own protocol id, so what an earlier run left is found
// and replaced; chains left by a run that died are removed at start.
import { podnetRuleset, podRouteLine } from "../proxier/commands.ts";
import { createExec, type Exec } from "../proxier/exec.ts";
import { Iptables, type ChainJump } from "../proxier/iptables.ts";
import type { Logger } from "../../log.ts";
import { readFileSync, writeFileSync } from "node:fs";

export const CHAIN_PODNET_FORWARD = "EDGEMESH-PODNET";
export const CHAIN_PODNET_MSS = "EDGEMESH-PODNET-MSS";
const JUMPS: ReadonlyArray<ChainJump> = [
  { table: "filter", from: "FORWARD", to: CHAIN_PODNET_FORWARD },
  { table: "mangle", from: "POSTROUTING", to: CHAIN_PODNET_MSS },
];
const FORWARD_SYSCTL = "/proc/sys/net/ipv4/ip_forward";

export class PodnetHost {
  private readonly exec: Exec;
  private readonly ipt: Iptables;
  /** CIDR → the route line we applied */
  private readonly routes = new Map<string, string>();
  /** the last failure to apply routes, so a lasting one is said once a minute */
  private lastError = { text: "", at: 0 };

  constructor(
    private readonly device: string,
    private readonly log: Logger,
    opts: { exec?: Exec; forwardSysctl?: string } = {},
  ) {
    this.exec = opts.exec ?? createExec();
    this.ipt = new Iptables({ exec: this.exec });
    this.forwardPath = opts.forwardSysctl ?? FORWARD_SYSCTL;
  }
  private readonly forwardPath: string;

  /** brings the device up with `mtu`, enables forwarding when off, installs the chains */
  async setUp(mtu: number): Promise<void> {
    await this.exec(["ip", "link", "set", "dev", this.device, "mtu", String(mtu), "txqueuelen", "1000", "up"]);
    await this.enableForwarding();
    await this.removeChains();
    await this.ipt.apply(podnetRuleset(CHAIN_PODNET_FORWARD, CHAIN_PODNET_MSS, this.device));
    await this.ipt.insertJumps(JUMPS);
  }

  private async enableForwarding(): Promise<void> {
    let now = "";
    try {
      now = readFileSync(this.forwardPath, "utf8").trim();
    } catch {
      return;
    }
    if (now === "1") return;
    writeFileSync(this.forwardPath, "1\n");
    // left on at stop: the host's CNI may have come to rely on it meanwhile
    this.log.warn("enabled IPv4 forwarding (net.ipv4.ip_forward=1): the pod network forwards between the TUN and the pods' interfaces", { device: this.device });
  }

  /**
   * makes our routes exactly `cidrs` (each into the TUN, from `src` when
   * given: a local address in our pod CIDR, so replies to this host's own
   * traffic come back through the tunnel); returns what changed
   */
  async setRoutes(cidrs: string[], src?: string): Promise<{ added: string[]; removed: string[] }> {
    const want = new Map<string, string>();
    for (const c of cidrs) {
      const line = podRouteLine("replace", c, this.device, src);
      if (line) want.set(c, line);
      else this.log.warn("pod CIDR outside the command grammar: not routed", { cidr: c });
    }
    const removed = [...this.routes.keys()].filter((c) => !want.has(c));
    const added = [...want].filter(([c, line]) => this.routes.get(c) !== line).map(([c]) => c);
    const lines = [...removed.map((c) => podRouteLine("del", c, this.device)!), ...added.map((c) => want.get(c)!)];
    if (lines.length === 0) return { added: [], removed: [] };
    const r = await this.exec(["ip", "-force", "-batch", "-"], { stdin: `${lines.join("\n")}\n`, check: false });
    for (const c of removed) this.routes.delete(c);
    if (r.code !== 0) {
      // not recorded: the next check (5 s) tries them again; the same error is said once a minute
      const error = r.stderr.trim().split("\n").slice(-3).join("; ");
      if (error !== this.lastError.text || Date.now() - this.lastError.at >= 60_000) this.log.warn("some pod routes were not applied", { error });
      this.lastError = { text: error, at: Date.now() };
      const present = (await this.kernelRoutes()) ?? new Set<string>();
      const applied = added.filter((c) => present.has(c));
      for (const c of applied) this.routes.set(c, want.get(c)!);
      return { added: applied, removed };
    }
    for (const c of added) this.routes.set(c, want.get(c)!);
    return { added, removed };
  }

  /**
   * our routes the kernel no longer has (deleting an address removes the
   * routes that name it as their source; someone may flush routes): they are
   * forgotten, so the next setRoutes puts them back
   */
  async lostRoutes(): Promise<string[]> {
    if (this.routes.size === 0) return [];
    const present = await this.kernelRoutes();
    if (!present) return [];
    const lost = [...this.routes.keys()].filter((c) => !present.has(c));
    for (const c of lost) this.routes.delete(c);
    return lost;
  }

  /** the destinations the kernel routes into our device, or undefined when `ip` fails */
  private async kernelRoutes(): Promise<Set<string> | undefined> {
    const r = await this.exec(["ip", "-4", "-o", "route", "show", "dev", this.device], { check: false });
    if (r.code !== 0) return undefined;
    // a /32 is shown without its length
    return new Set(r.stdout.split("\n").map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean).map((c) => (c.includes("/") ? c : `${c}/32`)));
  }

  /** removes the chains and jumps (routes go with the device) */
  async tearDown(): Promise<void> {
    this.routes.clear();
    await this.removeChains();
  }

  private async removeChains(): Promise<void> {
    await this.ipt.removeChains(JUMPS, { filter: [CHAIN_PODNET_FORWARD], mangle: [CHAIN_PODNET_MSS] });
  }
}
