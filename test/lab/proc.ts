// Subprocess plumbing for the NAT lab: one-shot commands with a hard timeout,
// and long-running processes whose output is kept in a bounded ring buffer so
// a chatty daemon can't grow test memory without limit.

import { createWriteStream, type WriteStream } from "node:fs";

export interface RunOptions {
  /** Written to the child's stdin, then closed. */
  stdin?: string;
  /** Kill (SIGKILL) the child after this long. Default 30 s. */
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export interface RunResult {
  /** Exit code, or null when the child died from a signal. */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const DEFAULT_RUN_TIMEOUT_MS = 30_000;

const SBIN_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

export function mergeEnv(env: Record<string, string | undefined> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) out[k] = v;
  // Commands run inside namespaces (iptables, sysctl, ip) live in sbin, which non-login PATHs may lack.
  const path = (out.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":");
  out.PATH = [...path, ...SBIN_DIRS.filter((d) => !path.includes(d))].join(":");
  return out;
}

/** Run a command to completion; never hangs past timeoutMs, never throws for a non-zero exit. */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const proc = Bun.spawn([...argv], {
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    env: mergeEnv(opts.env),
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS);
  try {
    const [stdout, stderr] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code: proc.exitCode, signal: signalName(proc.signalCode), stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** Like run(), but throws with the command's stderr when it fails. */
export async function runOrThrow(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(describeFailure(argv, r));
  return r;
}

export function describeFailure(argv: readonly string[], r: RunResult): string {
  const why = r.timedOut ? "timed out" : r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  const tail = (r.stderr.trim() || r.stdout.trim()).slice(-2000);
  return `command failed (${why}): ${argv.join(" ")}${tail ? `\n${tail}` : ""}`;
}

/** Keeps the most recent `limit` characters of a stream. */
class Ring {
  private chunks: string[] = [];
  private size = 0;
  dropped = 0;
  constructor(private readonly limit: number) {}
  push(s: string): void {
    if (!s) return;
    this.chunks.push(s);
    this.size += s.length;
    while (this.size > this.limit && this.chunks.length > 0) {
      const head = this.chunks[0]!;
      const excess = this.size - this.limit;
      if (head.length <= excess) {
        this.chunks.shift();
        this.size -= head.length;
        this.dropped += head.length;
      } else {
        this.chunks[0] = head.slice(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }
  text(): string {
    // Collapse so repeated reads stay cheap.
    if (this.chunks.length > 1) this.chunks = [this.chunks.join("")];
    return this.chunks[0] ?? "";
  }
}

export type StreamName = "stdout" | "stderr" | "both";

export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Also append raw output (stdout and stderr interleaved) to this file. */
  logFile?: string;
  /** Characters of output kept per stream. Default 256 KiB. */
  ringChars?: number;
  /** 'pipe' lets tests write() to the process. Default 'ignore'. */
  stdin?: "ignore" | "pipe";
  /** Echo output lines to this process's stderr with a prefix (debugging). */
  echo?: boolean;
}

type Listener = () => void;

/** A long-running process inside a lab namespace. */
export class LabProcess {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  private readonly proc: ReturnType<typeof spawnPiped>;
  private readonly rings: Record<StreamName, Ring>;
  private readonly listeners = new Set<Listener>();
  private status: ExitStatus | null = null;
  private log: WriteStream | null = null;

  constructor(
    readonly host: string,
    readonly argv: readonly string[],
    fullArgv: readonly string[],
    opts: SpawnOptions = {},
  ) {
    const ringChars = opts.ringChars ?? 256 * 1024;
    this.rings = { stdout: new Ring(ringChars), stderr: new Ring(ringChars), both: new Ring(ringChars) };
    if (opts.logFile) this.log = createWriteStream(opts.logFile, { flags: "a" });
    this.proc = spawnPiped(fullArgv, opts);
    this.pid = this.proc.pid;
    const echoPrefix = opts.echo ? `[${host}:${argv[0] ?? "?"}:${this.pid}] ` : null;
    const pumps = [
      this.pump(this.proc.stdout, "stdout", echoPrefix),
      this.pump(this.proc.stderr, "stderr", echoPrefix),
    ];
    this.exited = this.proc.exited.then(async () => {
      // Grandchildren may hold the pipes open after the child dies; don't wait on them for long.
      await Promise.race([Promise.all(pumps), Bun.sleep(200)]);
      const status: ExitStatus = { code: this.proc.exitCode, signal: signalName(this.proc.signalCode) };
      this.status = status;
      this.log?.end();
      this.notify();
      return status;
    });
  }

  get running(): boolean {
    return this.status === null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get exitStatus(): ExitStatus | null {
    return this.status;
  }

  /** Buffered output (most recent ringChars characters). */
  output(stream: StreamName = "both"): string {
    return this.rings[stream].text();
  }

  /** Send a signal; a no-op once the process has exited. */
  kill(signal: NodeJS.Signals | number = "SIGTERM"): void {
    if (!this.running) return;
    try {
      this.proc.kill(signal);
    } catch {
      // Already reaped.
    }
  }

  /** SIGTERM, then SIGKILL after graceMs. Resolves once the process is gone. */
  async stop(graceMs = 2000): Promise<ExitStatus> {
    this.kill("SIGTERM");
    const done = await Promise.race([this.exited, Bun.sleep(graceMs).then(() => null)]);
    if (done) return done;
    this.kill("SIGKILL");
    return this.exited;
  }

  write(data: string): void {
    const sink = this.proc.stdin;
    if (!sink || typeof sink === "number") throw new Error("process was spawned without stdin: 'pipe'");
    sink.write(data);
    sink.flush();
  }

  /**
   * Resolve with the first match of `pattern` in the buffered output; reject on
   * timeout or if the process exits first (the error carries the output tail).
   */
  waitForOutput(
    pattern: RegExp | string,
    opts: { timeoutMs?: number; stream?: StreamName } = {},
  ): Promise<RegExpMatchArray> {
    const re = typeof pattern === "string" ? new RegExp(escapeRegExp(pattern)) : pattern;
    const stream = opts.stream ?? "both";
    const timeoutMs = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const check: Listener = () => {
        const m = this.output(stream).match(re);
        if (m) return finish(() => resolve(m));
        if (this.status) {
          finish(() =>
            reject(new Error(`${this.describe()} exited (${fmtStatus(this.status!)}) before printing ${re}\n${this.tail()}`)),
          );
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${this.describe()}\n${this.tail()}`))),
        timeoutMs,
      );
      const finish = (f: () => void): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        f();
      };
      this.listeners.add(check);
      check();
    });
  }

  describe(): string {
    return `${this.host}$ ${this.argv.join(" ")} (pid ${this.pid})`;
  }

  /** Last lines of output, for error messages. */
  tail(chars = 2000): string {
    const s = this.output();
    return s.length > chars ? `...${s.slice(-chars)}` : s;
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  private async pump(stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr", echo: string | null): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        const s = decoder.decode(chunk, { stream: true });
        this.rings[name].push(s);
        this.rings.both.push(s);
        this.log?.write(chunk);
        if (echo) process.stderr.write(s.replace(/^(?=.)/gm, echo));
        this.notify();
      }
    } catch {
      // Stream torn down on kill; what we have is what there is.
    }
  }
}

function spawnPiped(argv: readonly string[], opts: SpawnOptions) {
  return Bun.spawn([...argv], {
    stdin: opts.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: mergeEnv(opts.env),
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
  });
}

function signalName(s: string | number | null): string | null {
  return s === null ? null : String(s);
}

export function fmtStatus(s: ExitStatus): string {
  return s.signal ? `signal ${s.signal}` : `code ${s.code}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
