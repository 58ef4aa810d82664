import { describe, expect, test } from "bun:test";
import { Runner } from "../src/agent/runner.ts";
import { createLogger } from "../src/log.ts";
import type { Module } from "../src/agent/module.ts";

function setup(deadlineMs = 10_000) {
  const lines: string[] = [];
  const exits: number[] = [];
  const log = createLogger("runner", "debug", { write: (l) => lines.push(l) });
  const runner = new Runner({ log, stopDeadlineMs: deadlineMs, exit: (c) => void exits.push(c) });
  return { runner, lines, exits };
}

function mod(name: string, order: string[], opts: { failStart?: boolean; hangStop?: boolean } = {}): Module {
  return {
    name,
    start: async () => {
      if (opts.failStart) throw new Error(`${name} cannot start`);
      order.push(`start ${name}`);
    },
    stop: async () => {
      order.push(`stop ${name}`);
      if (opts.hangStop) await new Promise(() => {});
    },
  };
}

describe("module runner", () => {
  test("starts in order, stops in reverse", async () => {
    const { runner, exits } = setup();
    const order: string[] = [];
    for (const n of ["controller", "tunnel", "proxier"]) runner.add(mod(n, order));
    await runner.start();
    expect(runner.allReady()).toBe(true);
    await runner.stop("test");
    expect(order).toEqual(["start controller", "start tunnel", "start proxier", "stop proxier", "stop tunnel", "stop controller"]);
    expect(exits).toEqual([]);
    expect(runner.states().every((s) => s.state === "stopped")).toBe(true);
  });

  test("a module that fails to start is cleaned up, then those already started stop in reverse", async () => {
    const { runner } = setup();
    const order: string[] = [];
    runner.add(mod("a", order));
    runner.add(mod("b", order));
    runner.add(mod("c", order, { failStart: true }));
    runner.add(mod("d", order));
    await expect(runner.start()).rejects.toThrow("c cannot start");
    // the failed module may hold half-made state (rules, listeners): it gets stop() too
    expect(order).toEqual(["start a", "start b", "stop c", "stop b", "stop a"]);
  });

  test("forces exit when stopping passes the deadline", async () => {
    const { runner, exits, lines } = setup(200);
    const order: string[] = [];
    runner.add(mod("a", order));
    runner.add(mod("stuck", order, { hangStop: true }));
    await runner.start();
    const t0 = performance.now();
    await runner.stop("SIGTERM");
    const took = performance.now() - t0;
    expect(exits).toEqual([1]);
    expect(took).toBeLessThan(2000);
    expect(order).toEqual(["start a", "start stuck", "stop stuck"]);
    expect(lines.some((l) => l.includes("stop deadline passed, forcing exit") && l.includes("stuck=stuck"))).toBe(true);
  });

  test("readiness: a module that reports it itself is not ready until it does", async () => {
    const { runner } = setup();
    const order: string[] = [];
    runner.add(mod("a", order));
    runner.add(mod("controller", order), false);
    await runner.start();
    expect(runner.allReady()).toBe(false);
    runner.setReady("controller", true);
    expect(runner.allReady()).toBe(true);
    await runner.stop("test");
  });
});
