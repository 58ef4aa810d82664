// The proxier: puts the bridge IP on a device (before the traffic module
// binds its listeners there), and programs nat rules that DNAT each
// ClusterIP:port to the listener the traffic module publishes for it.
import type { Module, ModuleContext, ModuleFactory } from "../module.ts";
import type { ListenerTable } from "../../model/listeners.ts";
import { ensureBridgeDevice, type BridgeDevice } from "./device.ts";
import { createExec, type Exec } from "./exec.ts";
import { Iptables } from "./iptables.ts";
import { Routes } from "./routes.ts";
import { CHAIN_GUARD, CHAIN_SERVICES, listenerRuleset, natRuleset, natRulesetDelta } from "./ruleset.ts";
import { guardRuleset } from "./commands.ts";

export interface ProxierOptions {
  /** runs ip/iptables; tests pass one prefixed with `ip netns exec NS` */
  exec?: Exec;
  /** iptables binaries (default: the host's `iptables` alternative) */
  iptables?: string;
  restore?: string;
  /** how often to re-check that our jumps are still first (kube-proxy may insert ahead of them) */
  resyncMs?: number;
}

export const proxierModule: ModuleFactory = {
  name: "proxier",
  enabled: (config) => config.agent.proxy.enable,
  readyOnStart: true,
  create: (ctx) => createProxier(ctx),
};

export function createProxier(ctx: ModuleContext, opts: ProxierOptions = {}): Module {
  return new Proxier(ctx, opts);
}

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

class Proxier implements Module {
  readonly name = "proxier";
  private readonly exec: Exec;
  private readonly ipt: Iptables;
  private device?: BridgeDevice;
  private routes?: Routes;
  private unsubscribe?: () => void;
  private stopped = false;
  private stopping?: Promise<void>;
  // Applies run one at a time; a table arriving meanwhile waits in `pending`
  // and replaces any older one there, so a burst costs at most one more apply.
  private queue: Promise<void> = Promise.resolve();
  private pending?: ListenerTable;
  private scheduled = false;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private retryMs = RETRY_MIN_MS;
  private resyncTimer?: ReturnType<typeof setInterval>;
  /** our jumps were put first once; from then on the periodic check keeps them there */
  private jumpsPlaced = false;
  /** the filter guard (fixed by the config) */
  private guard = "";
  /** the last ruleset in effect, for the periodic check to restore */
  private applied?: { text: string; interceptions: number };
  private state = { rules: 0, generation: -1, lastApplyMs: 0, snapshotToLiveMs: 0, lastError: "" };
  private readonly m;

  constructor(
    private readonly ctx: ModuleContext,
    private readonly opts: ProxierOptions,
  ) {
    this.exec = opts.exec ?? createExec();
    this.ipt = new Iptables({ exec: this.exec, ...(opts.iptables ? { iptables: opts.iptables } : {}), ...(opts.restore ? { restore: opts.restore } : {}) });
    const metrics = ctx.metrics;
    this.m = {
      applies: metrics.counter("proxier_applies_total", "Rulesets applied to nat EDGEMESH chains."),
      errors: metrics.counter("proxier_apply_errors_total", "Failed ruleset or route applies, by stage."),
      rules: metrics.gauge("proxier_rules", "DNAT rules in our nat chains (one per ClusterIP:port/protocol)."),
      lastSeconds: metrics.gauge("proxier_apply_duration_seconds", "Duration of the last ruleset apply."),
      sumSeconds: metrics.counter("proxier_apply_seconds_total", "Time spent applying rulesets."),
      routes: metrics.gauge("proxier_routes", "ClusterIP routes we added."),
      toLive: metrics.gauge("proxier_snapshot_to_live_seconds", "From the services snapshot's arrival to its rules and routes in effect, last table."),
    };
  }

  async start(): Promise<void> {
    const { config, log } = this.ctx;
    const { bridgeDeviceName, bridgeDeviceIP } = config.agent.proxy;
    this.device = await ensureBridgeDevice(bridgeDeviceName, bridgeDeviceIP, log, this.exec);
    this.routes = new Routes(this.device.device, this.exec);

    const stale = await this.ipt.removeAll();
    if (stale.jumps || stale.chains) log.warn("removed nat rules left by an earlier run", stale);
    await this.ipt.apply(natRuleset([], bridgeDeviceIP));
    this.guard = guardRuleset(CHAIN_GUARD, bridgeDeviceIP, config.agent.proxy.podSources);
    await this.ipt.apply(this.guard);
    await this.ipt.ensureJumps();
    log.info("nat chains ready", { iptables: this.ipt.iptables, version: await this.ipt.version() });

    this.unsubscribe = this.ctx.bus.subscribe("listeners", (t) => this.offer(t), "proxier", { replay: true });
    this.resyncTimer = setInterval(() => this.resyncJumps(), this.opts.resyncMs ?? 60_000);
  }

  async stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  status(): Record<string, unknown> {
    const s = this.state;
    return {
      proxier: {
        device: this.device?.kind ?? "none",
        rules: s.rules,
        generation: s.generation,
        lastApplyMs: s.lastApplyMs,
        snapshotToLiveMs: s.snapshotToLiveMs,
        routesAdded: this.routes?.added.size ?? 0,
        ...(s.lastError ? { lastError: s.lastError } : {}),
      },
    };
  }

  private offer(table: ListenerTable): void {
    if (this.stopped) return;
    this.pending = table;
    clearTimeout(this.retryTimer);
    if (this.scheduled) return;
    this.scheduled = true;
    this.serial(async () => {
      this.scheduled = false;
      const t = this.pending;
      this.pending = undefined;
      if (t && !this.stopped) await this.applyTable(t);
    });
  }

  private serial(job: () => Promise<void>): void {
    this.queue = this.queue.then(job).catch((e) => this.ctx.log.error("proxier job failed", { error: e }));
  }

  private async applyTable(table: ListenerTable): Promise<void> {
    const { log } = this.ctx;
    const { text, interceptions } = listenerRuleset(table);
    const rules = interceptions; // DNAT rules (in EDGEMESH-SERVICES); each entry chain adds one jump
    const t0 = performance.now();
    // Routes and rules are independent: both run at once. The jumps into our
    // chains do not change with the table; they are put in place by the first
    // apply and kept there by the periodic check, so a change costs one
    // iptables-restore (plus route commands for new ClusterIPs), not also the
    // listing of PREROUTING and OUTPUT.
    const routing = this.routes!.ensureRoutes(table.entries.flatMap((e) => e.clusterIPs)).then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    try {
      // only what changed, when our chains are as we left them; else the whole ruleset
      const delta = this.applied ? natRulesetDelta(this.applied.text, text) : undefined;
      if (delta === undefined) await this.ipt.apply(text);
      else if (delta) await this.ipt.apply(delta).catch(() => this.ipt.apply(text));
      if (!this.jumpsPlaced) {
        await this.ipt.ensureJumps();
        this.jumpsPlaced = true;
      }
    } catch (e) {
      await routing;
      this.failed("rules", table, e);
      return;
    }
    const ms = Math.round(performance.now() - t0);
    this.applied = { text, interceptions };
    Object.assign(this.state, { rules, lastApplyMs: ms });
    this.m.applies.inc();
    this.m.rules.set({}, rules);
    this.m.lastSeconds.set({}, ms / 1000);
    this.m.sumSeconds.inc({}, ms / 1000);

    const routed = await routing;
    if (!routed.ok) {
      this.failed("routes", table, routed.e);
      return;
    }
    const routes = routed.r;
    this.m.routes.set({}, this.routes!.added.size);
    // Only now is the table fully in effect: a connect() to its ClusterIPs works.
    const toLive = table.snapshotAt === undefined ? 0 : Math.round((performance.now() - table.snapshotAt) * 10) / 10;
    Object.assign(this.state, { generation: table.generation, snapshotToLiveMs: toLive, lastError: "" });
    this.m.toLive.set({}, toLive / 1000);
    this.retryMs = RETRY_MIN_MS;
    log.info("nat rules applied", { generation: table.generation, rules, ms, snapshotToLiveMs: toLive, routesAdded: routes.added, routesRemoved: routes.removed });
  }

  /** logs, counts, and retries the same table later unless a newer one arrives first */
  private failed(stage: "rules" | "routes", table: ListenerTable, e: unknown): void {
    const error = e instanceof Error ? e.message : String(e);
    this.state.lastError = `${stage}: ${error}`;
    this.m.errors.inc({ stage });
    this.ctx.log.error(stage === "rules" ? "nat rules apply failed" : "ClusterIP routes failed", { generation: table.generation, retryMs: this.retryMs, error });
    if (this.stopped) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      if (!this.pending) this.offer(table);
    }, delay);
  }

  /**
   * The periodic check: something else (a firewall reload, `iptables -t nat
   * -F`, kube-proxy) may have flushed or deleted our chains or pushed our
   * jumps down. Rules are put back from the last table, then the jumps.
   */
  private resyncJumps(): void {
    this.serial(async () => {
      if (this.stopped) return;
      try {
        const last = this.applied;
        if (last) {
          const have = await this.ipt.list(CHAIN_SERVICES);
          const dnat = have?.filter((l) => l.startsWith("-A ")).length;
          if (dnat !== last.interceptions) {
            await this.ipt.apply(last.text);
            this.ctx.log.warn("nat rules were changed by something else; restored", { expected: last.interceptions, found: dnat ?? "no chain" });
          }
        }
        const guard = (await this.ipt.list(CHAIN_GUARD, "filter"))?.filter((l) => l.startsWith("-A ")).length;
        const want = this.guard.split("\n").filter((l) => l.startsWith("-A ")).length;
        if (guard !== want) {
          await this.ipt.apply(this.guard);
          this.ctx.log.warn("filter guard was changed by something else; restored", { expected: want, found: guard ?? "no chain" });
        }
        if (await this.ipt.ensureJumps()) this.ctx.log.warn("iptables jumps were missing or not first; restored");
      } catch (e) {
        this.ctx.log.error("nat jump check failed", { error: e });
      }
    });
  }

  private async teardown(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    clearTimeout(this.retryTimer);
    clearInterval(this.resyncTimer);
    await this.queue;
    const { log } = this.ctx;
    // Each step runs even when an earlier one failed: leave as little behind as we can.
    const steps: Array<[string, () => Promise<unknown>]> = [
      ["nat rules", () => this.ipt.removeAll()],
      ["routes", () => this.routes?.removeRoutes() ?? Promise.resolve()],
      ["device", () => this.device?.remove() ?? Promise.resolve()],
    ];
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (e) {
        log.warn(`could not remove ${what}`, { error: e });
      }
    }
    log.info("proxier stopped", { device: this.device?.device ?? "none", removedDevice: this.device?.created ?? false });
  }
}
