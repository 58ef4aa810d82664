// What every agent module looks like. A module receives its context and
// nothing else; it reads its config section, subscribes to the bus, and
// reports readiness and status through the context.
import type { Config } from "../config/load.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../admin/metrics.ts";
import type { Bus } from "./bus.ts";

export interface ModuleContext {
  config: Config;
  bus: Bus;
  log: Logger;
  metrics: Metrics;
  /** mark this module ready (or not ready again, e.g. after losing its source) */
  setReady(ready: boolean): void;
}

export interface Module {
  readonly name: string;
  /** starts serving; resolves once listening. Readiness may come later via setReady. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** fields merged into the admin /status document */
  status?(): Record<string, unknown>;
}

export interface ModuleFactory {
  name: string;
  enabled(config: Config): boolean;
  /** true when start() alone means ready; false when the module calls setReady itself */
  readyOnStart: boolean;
  create(ctx: ModuleContext): Module;
}
