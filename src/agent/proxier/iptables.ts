// A thin layer over the host's iptables (nft or legacy backend, whichever the
// `iptables` alternative points at, or the binaries named in options). Every
// change goes through `iptables-restore --noflush`, so each one is a single
// kernel transaction and no other chain's rules are rewritten.
import { CHAIN_OUTPUT, CHAIN_PREROUTING, CHAIN_SERVICES } from "./ruleset.ts";
import { CommandError, createExec, type Exec } from "./exec.ts";

export interface IptablesOptions {
  /** iptables binary (default "iptables"; e.g. "iptables-legacy", "iptables-nft") */
  iptables?: string;
  /** restore binary (default: the iptables name + "-restore") */
  restore?: string;
  exec?: Exec;
}

/** builtin nat chain → our chain it jumps to */
export const JUMPS: ReadonlyArray<{ from: string; to: string }> = [
  { from: "PREROUTING", to: CHAIN_PREROUTING },
  { from: "OUTPUT", to: CHAIN_OUTPUT },
];
const OUR_CHAINS = new Set([...JUMPS.map((j) => j.to), CHAIN_SERVICES]);
const JUMP_COMMENT = "edgemesh: ClusterIP interception";
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

  /** `iptables -t nat -S [chain]` lines; with a chain, undefined when it does not exist */
  async list(chain?: string): Promise<string[] | undefined> {
    const argv = [this.iptables, ...WAIT, "-t", "nat", "-S", ...(chain ? [chain] : [])];
    const r = await this.exec(argv, { check: chain === undefined });
    if (r.code !== 0) {
      if (/No chain|does not exist|incompatible/i.test(r.stderr) && chain) return undefined;
      throw new CommandError([...argv], r.code, r.stderr);
    }
    return r.stdout.split("\n").filter((l) => l.length > 0);
  }

  /**
   * Makes our jump the first rule of nat PREROUTING and OUTPUT, exactly once,
   * so ClusterIP traffic reaches us before kube-proxy's KUBE-SERVICES. Our
   * chains must exist (apply a ruleset first). Returns whether anything changed.
   */
  async ensureJumps(): Promise<boolean> {
    const ops: string[] = [];
    for (const { from, to } of JUMPS) {
      const rules = ((await this.list(from)) ?? []).filter((l) => l.startsWith("-A "));
      const ours = rules.filter((l) => parseRule(l)?.target === to);
      if (ours.length === 1 && parseRule(rules[0] ?? "")?.target === to) continue;
      // Delete every copy and insert one at the top, in one transaction: the
      // jump is never missing, and never doubled, for any packet.
      for (const l of ours) ops.push(`-D${l.slice(2)}`);
      ops.push(`-I ${from} 1 -m comment --comment "${JUMP_COMMENT}" -j ${to}`);
    }
    if (ops.length === 0) return false;
    await this.apply(["*nat", ...ops, "COMMIT", ""].join("\n"));
    return true;
  }

  /** removes our jumps (all copies) and our chains; other chains' rules are left alone. Returns how many it removed. */
  async removeAll(): Promise<{ jumps: number; chains: number }> {
    const lines = (await this.list()) ?? [];
    const jumps: string[] = [];
    const chains: string[] = [];
    for (const l of lines) {
      const r = parseRule(l);
      if (r && JUMPS.some((j) => j.from === r.chain && j.to === r.target)) jumps.push(`-D${l.slice(2)}`);
      const w = words(l);
      if (w[0] === "-N" && w[1] && OUR_CHAINS.has(w[1])) chains.push(w[1]);
    }
    // Jumps go first, then every flush, then the deletes: a chain still
    // referenced (by a jump, or by our own chains' jumps) cannot be deleted.
    const ops = [...jumps, ...chains.map((c) => `-F ${c}`), ...chains.map((c) => `-X ${c}`)];
    if (ops.length) await this.apply(["*nat", ...ops, "COMMIT", ""].join("\n"));
    return { jumps: jumps.length, chains: chains.length };
  }
}
