// A thin layer over the host's iptables (nft or legacy backend, whichever the
// `iptables` alternative points at, or the binaries named in options). Every
// change goes through `iptables-restore --noflush`, so each one is a single
// kernel transaction and no other chain's rules are rewritten.
import { CHAIN_GUARD, CHAIN_OUTPUT, CHAIN_PREROUTING, CHAIN_SERVICES } from "./ruleset.ts";
import { CommandError, createExec, type Exec } from "./exec.ts";

export interface IptablesOptions {
  /** iptables binary (default "iptables"; e.g. "iptables-legacy", "iptables-nft") */
  iptables?: string;
  /** restore binary (default: the iptables name + "-restore") */
  restore?: string;
  exec?: Exec;
}

export type Table = "nat" | "filter" | "mangle";

/** a jump from a builtin chain to one of ours */
export interface ChainJump {
  table: Table;
  from: string;
  to: string;
  comment?: string;
}

/** builtin chain → our chain it jumps to */
export const JUMPS: ReadonlyArray<Required<ChainJump>> = [
  { table: "nat", from: "PREROUTING", to: CHAIN_PREROUTING, comment: "edgemesh: ClusterIP interception" },
  { table: "nat", from: "OUTPUT", to: CHAIN_OUTPUT, comment: "edgemesh: ClusterIP interception" },
  { table: "filter", from: "INPUT", to: CHAIN_GUARD, comment: "edgemesh: bridge IP for this host and its pods only" },
];
const OUR_CHAINS: Partial<Record<Table, Set<string>>> = { nat: new Set([CHAIN_PREROUTING, CHAIN_OUTPUT, CHAIN_SERVICES]), filter: new Set([CHAIN_GUARD]) };
// -w waits for the xtables lock (legacy backend) instead of failing while kube-proxy holds it.
const WAIT = ["-w", "5"];

/** splits an `iptables -S` line into words, keeping "quoted strings" whole */
export function words(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? "");
}

/** the chain a rule line appends to, and the chain or target it jumps to */
export function parseRule(line: string): { chain: string; target: string } | undefined {
  const w = words(line);
  if (w[0] !== "-A" || !w[1]) return undefined;
  const j = w.lastIndexOf("-j");
  return { chain: w[1], target: j >= 0 ? (w[j + 1] ?? "") : "" };
}

export class Iptables {
  readonly iptables: string;
  readonly restoreBin: string;
  private readonly exec: Exec;

  constructor(opts: IptablesOptions = {}) {
    this.iptables = opts.iptables ?? "iptables";
    this.restoreBin = opts.restore ?? `${this.iptables}-restore`;
    this.exec = opts.exec ?? createExec();
  }

  /** e.g. "v1.8.9 (nf_tables)": operators need to know which backend holds our rules */
  async version(): Promise<string> {
    const r = await this.exec([this.iptables, "--version"]);
    return r.stdout.trim().replace(/^\S+\s+/, "");
  }

  /** feeds restore input to `iptables-restore --noflush`; a failure names the rejected line */
  async apply(text: string): Promise<void> {
    const argv = [this.restoreBin, ...WAIT, "--noflush"];
    const r = await this.exec(argv, { stdin: text, check: false });
    if (r.code === 0) return;
    // legacy says "line N failed" or "Error occurred at line: N"; nft the same two ways
    const m = /line (\d+) failed|at line: (\d+)/.exec(r.stderr);
    const line = m?.[1] ?? m?.[2];
    const bad = line ? text.split("\n")[Number(line) - 1] : undefined;
    throw new CommandError(argv, r.code, r.stderr, bad ? ` (input line ${line}: ${bad})` : "");
  }

  /** `iptables -t TABLE -S [chain]` lines; with a chain, undefined when it does not exist */
  async list(chain?: string, table: Table = "nat"): Promise<string[] | undefined> {
    const argv = [this.iptables, ...WAIT, "-t", table, "-S", ...(chain ? [chain] : [])];
    const r = await this.exec(argv, { check: chain === undefined });
    if (r.code !== 0) {
      if (/No chain|does not exist|incompatible/i.test(r.stderr) && chain) return undefined;
      throw new CommandError([...argv], r.code, r.stderr);
    }
    return r.stdout.split("\n").filter((l) => l.length > 0);
  }

  /**
   * Makes our jump the first rule of nat PREROUTING and OUTPUT, exactly once,
   * so ClusterIP traffic reaches us before kube-proxy's KUBE-SERVICES, and of
   * filter INPUT, so the guard runs before a host firewall's ACCEPTs. Our
   * nat chains must exist (apply the rulesets first). Returns whether anything changed.
   */
  async ensureJumps(): Promise<boolean> {
    const ops: Record<Table, string[]> = { nat: [], filter: [], mangle: [] };
    for (const { table, from, to, comment } of JUMPS) {
      // a chain not in place (e.g. the guard, in tests of the nat part alone) gets no jump
      if (table === "filter" && (await this.list(to, table)) === undefined) continue;
      const rules = ((await this.list(from, table)) ?? []).filter((l) => l.startsWith("-A "));
      const ours = rules.filter((l) => parseRule(l)?.target === to);
      if (ours.length === 1 && parseRule(rules[0] ?? "")?.target === to) continue;
      // Delete every copy and insert one at the top, in one transaction: the
      // jump is never missing, and never doubled, for any packet.
      for (const l of ours) ops[table].push(`-D${l.slice(2)}`);
      ops[table].push(`-I ${from} 1 -m comment --comment "${comment}" -j ${to}`);
    }
    const text = (Object.keys(ops) as Table[]).filter((t) => ops[t].length).flatMap((t) => [`*${t}`, ...ops[t], "COMMIT"]);
    if (text.length === 0) return false;
    await this.apply([...text, ""].join("\n"));
    return true;
  }

  /** removes our jumps (all copies) and our chains; other chains' rules are left alone. Returns how many it removed. */
  async removeAll(): Promise<{ jumps: number; chains: number }> {
    return this.removeChains(JUMPS, OUR_CHAINS);
  }

  /**
   * Inserts each jump as the first rule of its builtin chain (one transaction
   * per table), so our chain runs before a host firewall's rules. The target
   * chains must exist.
   */
  async insertJumps(jumps: ReadonlyArray<ChainJump>): Promise<void> {
    for (const table of new Set(jumps.map((j) => j.table))) {
      const ops = jumps.filter((j) => j.table === table).map((j) => `-I ${j.from} 1${j.comment ? ` -m comment --comment "${j.comment}"` : ""} -j ${j.to}`);
      await this.apply([`*${table}`, ...ops, "COMMIT", ""].join("\n"));
    }
  }

  /**
   * Removes every copy of `jumps` and the chains named in `chains` (those
   * that exist), table by table; other chains' rules are left alone.
   * Returns how many jumps and chains it removed.
   */
  async removeChains(jumps: ReadonlyArray<ChainJump>, chains: Partial<Record<Table, Iterable<string>>>): Promise<{ jumps: number; chains: number }> {
    let jumpCount = 0;
    let chainCount = 0;
    const tables = new Set<Table>([...jumps.map((j) => j.table), ...(Object.keys(chains) as Table[])]);
    for (const table of tables) {
      const ours = new Set(chains[table] ?? []);
      const lines = (await this.list(undefined, table)) ?? [];
      const jumpOps: string[] = [];
      const found: string[] = [];
      for (const l of lines) {
        const r = parseRule(l);
        if (r && jumps.some((j) => j.table === table && j.from === r.chain && j.to === r.target)) jumpOps.push(`-D${l.slice(2)}`);
        const w = words(l);
        if (w[0] === "-N" && w[1] && ours.has(w[1])) found.push(w[1]);
      }
      // Jumps go first, then every flush, then the deletes: a chain still
      // referenced (by a jump, or by our own chains' jumps) cannot be deleted.
      const ops = [...jumpOps, ...found.map((c) => `-F ${c}`), ...found.map((c) => `-X ${c}`)];
      if (ops.length) await this.apply([`*${table}`, ...ops, "COMMIT", ""].join("\n"));
      jumpCount += jumpOps.length;
      chainCount += found.length;
    }
    return { jumps: jumpCount, chains: chainCount };
  }
}
