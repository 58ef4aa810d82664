// Runs the CLI as a real process and captures what a user would see.
import { writeFileSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "./temp.ts";
import { trustLine } from "./trust.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
export const MAIN = join(ROOT, "src/main.ts");
export const BINARY = join(ROOT, "dist/edgemesh");

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** runs `edgemesh ARGS` from source (or the compiled binary when given) */
export async function edgemesh(args: string[], opts: { cwd?: string; env?: Record<string, string>; binary?: string; timeoutMs?: number } = {}): Promise<Result> {
  const cmd = opts.binary ? [opts.binary, ...args] : [BUN, MAIN, ...args];
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs ?? 30_000,
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** a temp dir with a psk file; returns helpers to write configs into it, and the `trust` line of a node (a CA in the dir) */
export function tempConfigDir(): { dir: string; write(name: string, text: string): string; trust(name: string, role?: "agent" | "server"): string } {
  const dir = tempDir("edgemesh-test");
  writeFileSync(join(dir, "psk"), "test-mesh-secret-0123456789abcdef\n", { mode: 0o600 });
  return {
    dir,
    write(name, text) {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    },
    trust: (name, role = "agent") => trustLine(dir, name, role),
  };
}

/** builds dist/edgemesh once when missing (CI builds it before the tests) */
export async function ensureBinary(): Promise<string> {
  if (existsSync(BINARY)) return BINARY;
  const p = Bun.spawn(["bash", join(ROOT, "scripts/build.sh")], { cwd: ROOT, env: { ...process.env, EDGEMESH_CROSS: "0" }, stdout: "inherit", stderr: "inherit" });
  if ((await p.exited) !== 0) throw new Error("scripts/build.sh failed");
  return BINARY;
}

/** a free TCP port on loopback */
export function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** polls until fn returns a value (not undefined) or the deadline passes */
export async function until<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = e;
    }
    await Bun.sleep(intervalMs);
  }
  throw new Error(`condition not met within ${timeoutMs} ms${lastErr ? `: ${String(lastErr)}` : ""}`);
}
