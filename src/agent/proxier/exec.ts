// Runs the host tools the proxier drives (ip, iptables). An optional prefix
// (e.g. `ip netns exec NS`) lets tests run the same code inside a network
// namespace without touching the host's tables.
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** written to the child's stdin, then closed */
  stdin?: string;
  /** throw CommandError on a non-zero exit (default true) */
  check?: boolean;
}

export type Exec = (argv: string[], opts?: ExecOptions) => Promise<ExecResult>;

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly code: number,
    readonly stderr: string,
    detail = "",
  ) {
    super(`${argv.join(" ")}: exit ${code}${stderr.trim() ? `: ${stderr.trim().slice(-1000)}` : ""}${detail}`);
    this.name = "CommandError";
  }
}

// systemd and `ip netns exec` children may have a PATH without sbin, where these tools live.
const SBIN = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

function envWithSbin(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  const path = (env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":");
  env.PATH = [...path, ...SBIN.filter((d) => !path.includes(d))].join(":");
  return env;
}

export function createExec(prefix: string[] = [], timeoutMs = 30_000): Exec {
  const env = envWithSbin();
  return async (argv, opts = {}) => {
    const full = [...prefix, ...argv];
    const proc = Bun.spawn(full, {
      stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
      stdout: "pipe",
      stderr: "pipe",
      env,
    });
    // A wedged tool (e.g. waiting forever on a lock) must not stall every later apply.
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    try {
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      if (code !== 0 && opts.check !== false) throw new CommandError(full, code, proc.signalCode ? `${stderr}(killed by ${proc.signalCode})` : stderr);
      return { code, stdout, stderr };
    } finally {
      clearTimeout(timer);
    }
  };
}
