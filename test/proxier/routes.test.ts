import { expect, test } from "bun:test";
import { ROUTE_PROTO, Routes } from "../../src/agent/proxier/routes.ts";
import { withNetns, type Netns } from "./netns.ts";

async function routes(ns: Netns): Promise<string[]> {
  const r = await ns.exec(["ip", "-4", "-o", "route", "show", "table", "main"]);
  return r.stdout.split("\n").filter(Boolean).map((l) => l.trim()).sort();
}

async function withDevice(fn: (ns: Netns) => Promise<void>): Promise<void> {
  await withNetns(async (ns) => {
    await ns.exec(["ip", "link", "add", "edgemesh0", "type", "bridge"]);
    await ns.exec(["ip", "link", "set", "edgemesh0", "up"]);
    await ns.exec(["ip", "addr", "add", "169.254.96.16/32", "dev", "edgemesh0"]);
    await fn(ns);
  });
}

test("adds IP/32 only where no route exists; never touches others; shrinks and removes ours", async () => {
  await withDevice(async (ns) => {
    // Someone else's routes: a covering subnet and an exact /32.
    await ns.exec(["ip", "link", "add", "other0", "type", "bridge"]);
    await ns.exec(["ip", "link", "set", "other0", "up"]);
    await ns.exec(["ip", "route", "add", "10.97.0.0/16", "dev", "other0"]);
    await ns.exec(["ip", "route", "add", "10.96.0.99/32", "dev", "other0"]);
    const foreign = await routes(ns);

    const r = new Routes("edgemesh0", ns.exec);
    expect(await r.ensureRoutes(["10.96.0.10", "10.96.0.11", "10.97.0.5", "10.96.0.99", "fd00::1"])).toEqual({ added: 2, removed: 0 });
    expect([...r.added].sort()).toEqual(["10.96.0.10", "10.96.0.11"]);
    const now = await routes(ns);
    expect(now).toEqual(expect.arrayContaining(foreign));
    expect(now.filter((l) => l.includes(`proto ${ROUTE_PROTO}`)).map((l) => l.split(" ")[0]).sort()).toEqual(["10.96.0.10", "10.96.0.11"]);
    const get = await ns.exec(["ip", "route", "get", "10.96.0.10"]);
    expect(get.stdout).toContain("dev edgemesh0");

    // Idempotent, then the set shrinks: the route no longer needed goes.
    expect(await r.ensureRoutes(["10.96.0.10", "10.96.0.11"])).toEqual({ added: 0, removed: 0 });
    expect(await r.ensureRoutes(["10.96.0.11"])).toEqual({ added: 0, removed: 1 });
    expect((await ns.exec(["ip", "route", "get", "10.96.0.10"], { check: false })).code).not.toBe(0);

    await r.removeRoutes();
    expect(await routes(ns)).toEqual(foreign);
  });
});

test("routes left by a crashed run are adopted, and removed when no longer wanted", async () => {
  await withDevice(async (ns) => {
    const crashed = new Routes("edgemesh0", ns.exec);
    await crashed.ensureRoutes(["10.96.0.10", "10.96.0.11"]);
    const next = new Routes("edgemesh0", ns.exec);
    expect(await next.ensureRoutes(["10.96.0.11", "10.96.0.12"])).toEqual({ added: 1, removed: 1 });
    expect([...next.added].sort()).toEqual(["10.96.0.11", "10.96.0.12"]);
    await next.removeRoutes();
    expect((await routes(ns)).filter((l) => l.includes(`proto ${ROUTE_PROTO}`))).toEqual([]);
  });
});

test("2,000 ClusterIPs cost a few processes, not one each", async () => {
  await withDevice(async (ns) => {
    let spawned = 0;
    const counting: typeof ns.exec = (argv, opts) => {
      spawned++;
      return ns.exec(argv, opts);
    };
    const ips = Array.from({ length: 2000 }, (_, i) => `10.96.${i >> 8}.${i & 255}`);
    const r = new Routes("edgemesh0", counting);
    const t0 = performance.now();
    expect(await r.ensureRoutes(ips)).toEqual({ added: 2000, removed: 0 });
    const addMs = performance.now() - t0;
    expect(spawned).toBeLessThanOrEqual(4);
    const t1 = performance.now();
    await r.removeRoutes();
    console.log(`routes: 2000 added in ${addMs.toFixed(0)} ms, removed in ${(performance.now() - t1).toFixed(0)} ms, ${spawned} processes`);
    expect((await routes(ns)).filter((l) => l.includes(`proto ${ROUTE_PROTO}`))).toEqual([]);
  });
});
