// A throwaway network namespace per test: every ip/iptables command of the
// code under test runs inside it through an `ip netns exec` prefix, so the
// root namespace's tables and routes are never touched.
import { createExec, type Exec } from "../../src/agent/proxier/exec.ts";

const PREFIX = "emproxier";
let seq = 0;
const run = createExec();

export interface Netns {
  name: string;
  /** runs argv inside the namespace */
  exec: Exec;
  /** `iptables-save -t nat` of a backend, without comments and counters */
  natSave(backend: Backend): Promise<string[]>;
  destroy(): Promise<void>;
}

export interface Backend {
  name: "legacy" | "nft";
  iptables: string;
  restore: string;
  save: string;
}

export const BACKENDS: Backend[] = [
  { name: "nft", iptables: "iptables-nft", restore: "iptables-nft-restore", save: "iptables-nft-save" },
  { name: "legacy", iptables: "iptables-legacy", restore: "iptables-legacy-restore", save: "iptables-legacy-save" },
];

/** the backends whose binaries exist on this host */
export async function availableBackends(): Promise<Backend[]> {
  const out: Backend[] = [];
  for (const b of BACKENDS) if ((await run([b.iptables, "--version"], { check: false }).catch(() => ({ code: 1 }))).code === 0) out.push(b);
  return out;
}

/** removes namespaces left by test processes that died before cleaning up */
async function removeOrphans(): Promise<void> {
  const r = await run(["ip", "netns", "list"], { check: false });
  for (const line of r.stdout.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const pid = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name)?.[1];
    if (!pid || Number(pid) === process.pid) continue;
    try {
      process.kill(Number(pid), 0);
    } catch {
      await killAndDelete(name);
    }
  }
}

async function killAndDelete(name: string): Promise<void> {
  const pids = await run(["ip", "netns", "pids", name], { check: false });
  for (const p of pids.stdout.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), "SIGKILL");
    } catch {}
  }
  await run(["ip", "netns", "del", name], { check: false });
}

export async function createNetns(): Promise<Netns> {
  await removeOrphans();
  const name = `${PREFIX}-${process.pid}-${seq++}`;
  await run(["ip", "netns", "add", name]);
  const exec = createExec(["ip", "netns", "exec", name]);
  // Local delivery (to the bridge IP) needs lo up, as on any real host.
  await exec(["ip", "link", "set", "lo", "up"]);
  return {
    name,
    exec,
    async natSave(b) {
      const r = await exec([b.save, "-t", "nat"]);
      return r.stdout.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.replace(/ \[\d+:\d+\]$/, ""));
    },
    destroy: () => killAndDelete(name),
  };
}

/** runs fn with a fresh namespace, deleted afterwards whatever happens */
export async function withNetns<T>(fn: (ns: Netns) => Promise<T>): Promise<T> {
  const ns = await createNetns();
  try {
    return await fn(ns);
  } finally {
    await ns.destroy();
  }
}
