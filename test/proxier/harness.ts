// Runs the proxier module in-process against a namespace: a real bus, a real
// metrics registry, a config built the normal way, and every command
// prefixed with `ip netns exec`.
import { join } from "node:path";
import { Metrics } from "../../src/admin/metrics.ts";
import { Bus } from "../../src/agent/bus.ts";
import type { Module } from "../../src/agent/module.ts";
import { createProxier, type ProxierOptions } from "../../src/agent/proxier/index.ts";
import { buildConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/log.ts";
import type { ListenerTable } from "../../src/model/listeners.ts";
import { BUN, tempConfigDir, until } from "../util/run.ts";
import { BRIDGE_IP } from "./fixtures.ts";
import type { Backend, Netns } from "./netns.ts";

export interface Harness {
  module: Module;
  bus: Bus;
  metrics: Metrics;
  logs: string[];
  status(): { device: string; rules: number; generation: number; lastApplyMs: number; routesAdded: number; lastError?: string };
  /** publishes a table and waits until it is applied */
  publish(t: ListenerTable): Promise<void>;
}

export function proxierIn(ns: Netns, b: Backend, opts: ProxierOptions = {}): Harness {
  const logs: string[] = [];
  const log = createLogger("proxier", "debug", { write: (l) => logs.push(l) });
  const dir = tempConfigDir();
  const config = buildConfig({ psk: "psk", agent: { proxy: { bridgeDeviceName: "edgemesh0", bridgeDeviceIP: BRIDGE_IP } } }, dir.dir, "", { role: "agent", hostname: () => "node1" });
  const bus = new Bus(log);
  const metrics = new Metrics();
  const module = createProxier({ config, bus, log, metrics, setReady: () => {} }, { exec: ns.exec, iptables: b.iptables, restore: b.restore, ...opts });
  const status = () => (module.status!() as { proxier: ReturnType<Harness["status"]> }).proxier;
  return {
    module,
    bus,
    metrics,
    logs,
    status,
    async publish(t) {
      bus.publish("listeners", t);
      await until(() => (status().generation === t.generation ? true : undefined), 20_000, 10);
    },
  };
}

const TOOL = join(import.meta.dir, "tcp-tool.ts");

/** a TCP server inside the namespace that greets and reports each peer on stdout */
export async function serveIn(ns: Netns, host: string, port: number): Promise<{ accepted(): Promise<string>; kill(): void }> {
  const proc = Bun.spawn(["ip", "netns", "exec", ns.name, BUN, TOOL, "serve", host, String(port)], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  let buf = "";
  const nextLine = async (): Promise<string> => {
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`server exited (${await proc.exited}) before printing a line`);
      buf += new TextDecoder().decode(value);
    }
    const i = buf.indexOf("\n");
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return line;
  };
  const first = await nextLine();
  if (first !== "listening") throw new Error(`server: ${first}`);
  return { accepted: nextLine, kill: () => proc.kill("SIGKILL") };
}

/** connects from inside the namespace; resolves with what the server said */
export async function connectIn(ns: Netns, host: string, port: number): Promise<{ code: number; out: string }> {
  const r = await ns.exec([BUN, TOOL, "connect", host, String(port)], { check: false });
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}
