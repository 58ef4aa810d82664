// Starts modules in their declared order and stops them in reverse. Stopping
// has a deadline: js-libp2p processes have been seen to hang in stop(), and
// systemd must get an exit it can act on rather than a process that ignores
// SIGTERM.
import type { Logger } from "../log.ts";
import type { Module } from "./module.ts";

export type ModuleState = "idle" | "starting" | "running" | "stopping" | "stopped" | "failed";

interface Entry {
  module: Module;
  state: ModuleState;
  ready: boolean;
}

export interface RunnerOptions {
  log: Logger;
  stopDeadlineMs?: number;
  /** replaced in tests; the real one ends the process */
  exit?: (code: number) => void;
}

export class Runner {
  private readonly entries: Entry[] = [];
  private stopping: Promise<void> | undefined;
  private readonly log: Logger;
  private readonly deadlineMs: number;
  private readonly exit: (code: number) => void;

  constructor(opts: RunnerOptions) {
    this.log = opts.log;
    this.deadlineMs = opts.stopDeadlineMs ?? 10_000;
    this.exit = opts.exit ?? ((code) => process.exit(code));
  }

  /** registers a module; readyOnStart=false means it reports readiness itself */
  add(module: Module, readyOnStart = true): void {
    this.entries.push({ module, state: "idle", ready: false });
    if (!readyOnStart) this.notReadyOnStart.add(module.name);
  }

  private readonly notReadyOnStart = new Set<string>();

  setReady(name: string, ready: boolean): void {
    const e = this.entries.find((x) => x.module.name === name);
    if (!e) return;
    if (e.ready !== ready) this.log.info(ready ? "module ready" : "module not ready", { module: name });
    e.ready = ready;
  }

  states(): Array<{ name: string; state: ModuleState; ready: boolean }> {
    return this.entries.map((e) => ({ name: e.module.name, state: e.state, ready: e.ready }));
  }

  allReady(): boolean {
    return this.entries.every((e) => e.state === "running" && e.ready);
  }

  modules(): Module[] {
    return this.entries.map((e) => e.module);
  }

  async start(): Promise<void> {
    for (const e of this.entries) {
      e.state = "starting";
      const t0 = performance.now();
      try {
        await e.module.start();
      } catch (err) {
        e.state = "failed";
        this.log.error("module failed to start", { module: e.module.name, error: err });
        await this.stopStarted();
        throw err;
      }
      e.state = "running";
      if (!this.notReadyOnStart.has(e.module.name)) e.ready = true;
      this.log.info("module started", { module: e.module.name, ms: Math.round(performance.now() - t0) });
    }
  }

  private async stopStarted(): Promise<void> {
    for (const e of [...this.entries].reverse()) {
      if (e.state !== "running" && e.state !== "failed") continue;
      e.state = "stopping";
      e.ready = false;
      try {
        await e.module.stop();
        e.state = "stopped";
      } catch (err) {
        e.state = "failed";
        this.log.warn("module failed to stop cleanly", { module: e.module.name, error: err });
      }
    }
  }

  /** stops everything in reverse order; past the deadline the process is ended */
  stop(reason: string): Promise<void> {
    if (this.stopping) return this.stopping;
    this.log.info("stopping", { reason, deadlineMs: this.deadlineMs });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.deadlineMs);
    });
    this.stopping = Promise.race([this.stopStarted().then(() => "done" as const), deadline]).then((r) => {
      clearTimeout(timer);
      if (r === "timeout") {
        const stuck = this.entries.filter((e) => e.state === "stopping").map((e) => e.module.name);
        this.log.error("stop deadline passed, forcing exit", { deadlineMs: this.deadlineMs, stuck: stuck.join(",") });
        this.exit(1);
      }
    });
    return this.stopping;
  }

  /** SIGTERM/SIGINT stop gracefully then exit 0; a second signal exits at once */
  handleSignals(onDone: (code: number) => void = this.exit): void {
    let count = 0;
    const handler = (sig: NodeJS.Signals) => {
      count++;
      if (count > 1) {
        this.log.warn("second signal, exiting now", { signal: sig });
        this.exit(1);
        return;
      }
      void this.stop(sig).then(() => onDone(0));
    };
    process.on("SIGTERM", handler);
    process.on("SIGINT", handler);
  }
}
