import { describe, expect, test } from "bun:test";
import { Bus } from "../src/agent/bus.ts";
import { createLogger } from "../src/log.ts";
import type { ServiceSnapshot } from "../src/model/index.ts";

function capture() {
  const lines: string[] = [];
  return { lines, log: createLogger("bus", "debug", { write: (l) => lines.push(l) }) };
}

const snap = (generation: number): ServiceSnapshot => ({ services: [], generation });

describe("event bus", () => {
  test("delivers typed events to every subscriber in publication order", () => {
    const { log } = capture();
    const bus = new Bus(log);
    const a: number[] = [];
    const b: number[] = [];
    bus.subscribe("services", (s) => void a.push(s.generation), "a");
    bus.subscribe("services", (s) => void b.push(s.generation), "b");
    for (let i = 1; i <= 5; i++) bus.publish("services", snap(i));
    expect(a).toEqual([1, 2, 3, 4, 5]);
    expect(b).toEqual([1, 2, 3, 4, 5]);
  });

  test("a publication made inside a handler is delivered after the current one to everyone", () => {
    const { log } = capture();
    const bus = new Bus(log);
    const seen: string[] = [];
    bus.subscribe("services", (s) => {
      seen.push(`a${s.generation}`);
      if (s.generation === 1) bus.publish("services", snap(2));
    });
    bus.subscribe("services", (s) => void seen.push(`b${s.generation}`));
    bus.publish("services", snap(1));
    expect(seen).toEqual(["a1", "b1", "a2", "b2"]);
  });

  test("a throwing subscriber is logged and the others are still served", async () => {
    const { log, lines } = capture();
    const bus = new Bus(log);
    const got: number[] = [];
    bus.subscribe("services", () => {
      throw new Error("boom");
    }, "broken");
    bus.subscribe("services", async () => {
      throw new Error("async boom");
    }, "broken-async");
    bus.subscribe("services", (s) => void got.push(s.generation), "healthy");
    bus.publish("services", snap(1));
    bus.publish("services", snap(2));
    await Bun.sleep(0);
    expect(got).toEqual([1, 2]);
    expect(lines.filter((l) => l.includes("subscriber=broken ")).length).toBe(2);
    expect(lines.some((l) => l.includes("ERROR [bus] subscriber failed") && l.includes("error=boom"))).toBe(true);
    expect(lines.some((l) => l.includes("subscriber=broken-async") && l.includes('"async boom"'))).toBe(true);
  });

  test("topics are separate; replay hands a late subscriber the last snapshot", () => {
    const { log } = capture();
    const bus = new Bus(log);
    const nodes: number[] = [];
    bus.subscribe("nodes", (n) => void nodes.push(n.generation));
    bus.publish("services", snap(7));
    expect(nodes).toEqual([]);
    const late: number[] = [];
    bus.subscribe("services", (s) => void late.push(s.generation), "late", { replay: true });
    expect(late).toEqual([7]);
    expect(bus.latest("services")?.generation).toBe(7);
  });

  test("unsubscribe stops delivery", () => {
    const { log } = capture();
    const bus = new Bus(log);
    const got: number[] = [];
    const off = bus.subscribe("services", (s) => void got.push(s.generation));
    bus.publish("services", snap(1));
    off();
    bus.publish("services", snap(2));
    expect(got).toEqual([1]);
  });
});
