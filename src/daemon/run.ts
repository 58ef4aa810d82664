// Runs a role (agent or server): admin endpoint first, then the role's
// modules in order; reverse on SIGTERM/SIGINT with a deadline.
import type { Config } from "../config/load.ts";
import { createLogger, type Logger } from "../log.ts";
import { Metrics } from "../admin/metrics.ts";
import { startAdmin, type AdminServer } from "../admin/server.ts";
import { emptyStatus, type StatusDoc } from "../admin/status.ts";
import { Runner } from "../agent/runner.ts";
import { Bus } from "../agent/bus.ts";
import type { ModuleFactory } from "../agent/module.ts";
import { VERSION } from "../version.ts";

export interface Daemon {
  runner: Runner;
  bus: Bus;
  metrics: Metrics;
  log: Logger;
  status(): StatusDoc;
  stop(reason: string): Promise<void>;
}

export interface DaemonOptions {
  stopDeadlineMs?: number;
  exit?: (code: number) => void;
  signals?: boolean;
}

export function registerProcessMetrics(metrics: Metrics, runner: Runner, started: number): void {
  metrics.collect("process_uptime_seconds", "Seconds since the process started.", "gauge", () => [
    { value: Math.round((performance.now() - started) / 10) / 100 },
  ]);
  metrics.collect("process_resident_memory_bytes", "Resident set size in bytes.", "gauge", () => [{ value: process.memoryUsage.rss() }]);
  metrics.collect("module_up", "1 when the module runs, per module and state.", "gauge", () =>
    runner.states().map((s) => ({ labels: { module: s.name, state: s.state }, value: s.state === "running" ? 1 : 0 })),
  );
  metrics.collect("module_ready", "1 when the module reported ready.", "gauge", () =>
    runner.states().map((s) => ({ labels: { module: s.name }, value: s.ready ? 1 : 0 })),
  );
}

export async function runDaemon(config: Config, factories: ModuleFactory[], opts: DaemonOptions = {}): Promise<Daemon> {
  const started = performance.now();
  const root = createLogger("main", config.logLevel);
  const runner = new Runner({ log: root.child("runner"), stopDeadlineMs: opts.stopDeadlineMs, exit: opts.exit });
  const bus = new Bus(root.child("bus"));
  const metrics = new Metrics();
  registerProcessMetrics(metrics, runner, started);

  const status = (): StatusDoc => {
    const doc = emptyStatus(config.role, config.nodeName, VERSION);
    doc.uptimeSeconds = Math.round((performance.now() - started) / 1000);
    doc.modules = runner.states();
    doc.ready = runner.allReady();
    for (const m of runner.modules()) {
      try {
        Object.assign(doc, m.status?.() ?? {});
      } catch (e) {
        root.warn("status contributor failed", { module: m.name, error: e });
      }
    }
    return doc;
  };

  let admin: AdminServer | undefined;
  runner.add({
    name: "admin",
    start: async () => {
      admin = startAdmin(
        config.adminListen,
        {
          ready: () => runner.allReady(),
          notReady: () => runner.states().filter((s) => !s.ready).map((s) => s.name),
          status,
          metrics,
        },
        root.child("admin"),
      );
    },
    stop: async () => {
      await admin?.stop();
    },
  });
  for (const f of factories) {
    if (!f.enabled(config)) {
      root.info("module disabled", { module: f.name });
      continue;
    }
    const log = root.child(f.name);
    const mod = f.create({ config, bus, log, metrics, setReady: (r) => runner.setReady(f.name, r) });
    runner.add(mod, f.readyOnStart);
  }

  root.info(`edgemesh ${config.role} starting`, { version: VERSION, node: config.nodeName, config: config.configPath, pid: process.pid });
  for (const w of config.warnings ?? []) root.warn(w);
  await runner.start();
  if (opts.signals !== false) runner.handleSignals();
  root.info(`edgemesh ${config.role} running`, { ms: Math.round(performance.now() - started) });
  return { runner, bus, metrics, log: root, status, stop: (r) => runner.stop(r) };
}
