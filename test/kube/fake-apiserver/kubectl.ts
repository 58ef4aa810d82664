// Runs the system kubectl against a FakeApiServer, isolated from any user
// kubeconfig and from kubectl's on-disk discovery cache (which is keyed by
// host:port, so a reused port would otherwise serve stale discovery).

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FakeApiServer } from "./server.ts";

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Path of kubectl on PATH, or undefined when it is not installed. */
export function findKubectl(): string | undefined {
  return Bun.which("kubectl") ?? undefined;
}

export interface KubectlOptions {
  /** Extra connection flags, e.g. ["--token", t, "--certificate-authority", file]. */
  auth?: string[];
  stdin?: string;
  timeoutMs?: number;
}

/**
 * Must be awaited (not run synchronously): the server answers on this same
 * event loop, so a blocking spawn would deadlock.
 */
export async function kubectl(api: FakeApiServer, args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  const bin = findKubectl();
  if (!bin) throw new Error("kubectl is not installed");
  const home = mkdtempSync(join(tmpdir(), "fake-kubectl-"));
  // An empty but present kubeconfig: older kubectl warns on stderr when the file is missing.
  writeFileSync(join(home, "config"), "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n");
  try {
    const proc = Bun.spawn(
      [bin, "--server", api.url, "--cache-dir", join(home, "cache"), "--request-timeout", "20s", ...(opts.auth ?? []), ...args],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, KUBECONFIG: join(home, "config") },
        stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore",
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const timer = setTimeout(() => proc.kill(), opts.timeoutMs ?? 30000);
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    return { code, stdout, stderr };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
