// The proxier module end to end inside a namespace, on each iptables backend.
import { describe, expect, test } from "bun:test";
import { parseRule } from "../../src/agent/proxier/iptables.ts";
import { ROUTE_PROTO } from "../../src/agent/proxier/routes.ts";
import { proxierModule } from "../../src/agent/proxier/index.ts";
import { BRIDGE_IP, FOREIGN_NAT, bigTable, chainRules, foreign, ours, table } from "./fixtures.ts";
import { connectIn, proxierIn, serveIn } from "./harness.ts";
import { availableBackends, withNetns, type Netns } from "./netns.ts";
import { until } from "../util/run.ts";

const ourRoutes = async (ns: Netns) =>
  (await ns.exec(["ip", "-4", "-o", "route", "show", "proto", String(ROUTE_PROTO)])).stdout.split("\n").filter(Boolean);

const STALE = [
  "*nat",
  ":EDGEMESH-PREROUTING - [0:0]",
  ":EDGEMESH-OUTPUT - [0:0]",
  "-A EDGEMESH-OUTPUT -d 10.96.9.9/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 169.254.96.16:9999",
  "-A PREROUTING -j EDGEMESH-PREROUTING",
  "-A OUTPUT -j EDGEMESH-OUTPUT",
  "-A OUTPUT -j EDGEMESH-OUTPUT",
  "COMMIT",
  "",
].join("\n");

test("the factory is enabled by agent.proxy.enable and ready on start", () => {
  expect(proxierModule.name).toBe("proxier");
  expect(proxierModule.readyOnStart).toBe(true);
  const cfg = (enable: boolean) => ({ agent: { proxy: { enable } } }) as Parameters<typeof proxierModule.enabled>[0];
  expect(proxierModule.enabled(cfg(true))).toBe(true);
  expect(proxierModule.enabled(cfg(false))).toBe(false);
});

for (const b of await availableBackends()) {
  describe(`proxier module (${b.name})`, () => {
    test("start replaces a crashed run's chains and jumps; tables replace rules; stop leaves nothing", async () => {
      await withNetns(async (ns) => {
        await ns.exec([b.restore], { stdin: FOREIGN_NAT });
        const foreignBefore = foreign(await ns.natSave(b));
        await ns.exec([b.restore, "--noflush"], { stdin: STALE });
        const h = proxierIn(ns, b);
        await h.module.start();

        let save = await ns.natSave(b);
        expect(foreign(save)).toEqual(foreignBefore);
        // the stale DNAT is gone; only the entry chains' jumps to the (empty) shared chain remain
        expect(ours(save).filter((l) => l.startsWith("-A EDGEMESH")).sort()).toEqual(["-A EDGEMESH-OUTPUT -j EDGEMESH-SERVICES", "-A EDGEMESH-PREROUTING -j EDGEMESH-SERVICES"]);
        for (const [chain, to] of [["PREROUTING", "EDGEMESH-PREROUTING"], ["OUTPUT", "EDGEMESH-OUTPUT"]] as const) {
          const rules = chainRules(save, chain);
          expect(parseRule(rules[0]!)?.target).toBe(to);
          expect(rules.filter((r) => r.includes(to))).toHaveLength(1);
        }
        expect(h.logs.join("")).toContain("removed nat rules left by an earlier run");
        const link = JSON.parse((await ns.exec(["ip", "-4", "-d", "-j", "addr", "show", "edgemesh0"])).stdout)[0];
        expect(link.linkinfo.info_kind).toBe(h.status().device);
        expect(link.addr_info.map((a: { local: string }) => a.local)).toEqual([BRIDGE_IP]);

        await h.publish(table(1, [
          { clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 },
          { clusterIPs: ["10.96.0.11", "fd00::11"], port: 53, protocol: "UDP", listenPort: 40002 },
        ]));
        save = await ns.natSave(b);
        expect(chainRules(save, "EDGEMESH-SERVICES")).toHaveLength(2);
        expect(chainRules(save, "EDGEMESH-PREROUTING")).toEqual(["-A EDGEMESH-PREROUTING -j EDGEMESH-SERVICES"]);
        expect(h.status()).toMatchObject({ rules: 2, generation: 1, routesAdded: 2 });
        expect((await ourRoutes(ns)).map((l) => l.split(" ")[0]).sort()).toEqual(["10.96.0.10", "10.96.0.11"]);
        expect(h.logs.filter((l) => l.includes("nat rules applied"))).toHaveLength(1);
        expect(h.logs.find((l) => l.includes("nat rules applied"))).toMatch(/generation=1 rules=2 ms=\d+/);

        await h.publish(table(2, [{ clusterIPs: ["10.96.0.20"], port: 443, listenPort: 40005 }]));
        save = await ns.natSave(b);
        expect(chainRules(save, "EDGEMESH-SERVICES")).toEqual([expect.stringContaining("-d 10.96.0.20/32 -p tcp -m tcp --dport 443")]);
        expect((await ourRoutes(ns)).map((l) => l.split(" ")[0])).toEqual(["10.96.0.20"]);
        expect(foreign(save)).toEqual(foreignBefore);
        expect(h.metrics.counter("proxier_applies_total", "").get()).toBe(2);
        expect(h.metrics.render()).toContain("edgemesh_proxier_rules 1");

        await h.module.stop();
        save = await ns.natSave(b);
        expect(ours(save)).toEqual([]);
        expect(foreign(save)).toEqual(foreignBefore);
        expect(await ourRoutes(ns)).toEqual([]);
        expect((await ns.exec(["ip", "link", "show", "edgemesh0"], { check: false })).code).not.toBe(0);
      });
    });

    test("a burst of tables is coalesced: the newest wins, fewer applies than tables", async () => {
      await withNetns(async (ns) => {
        const h = proxierIn(ns, b);
        await h.module.start();
        try {
          for (let g = 1; g <= 10; g++) h.bus.publish("listeners", table(g, [{ clusterIPs: [`10.96.1.${g}`], port: 80, listenPort: 41000 + g }]));
          await until(() => (h.status().generation === 10 ? true : undefined));
          // Tables arriving while an apply runs.
          for (let g = 11; g <= 20; g++) {
            h.bus.publish("listeners", table(g, [{ clusterIPs: [`10.96.1.${g}`], port: 80, listenPort: 41000 + g }]));
            await Bun.sleep(2);
          }
          await until(() => (h.status().generation === 20 ? true : undefined));
          const applies = h.metrics.counter("proxier_applies_total", "").get();
          expect(applies).toBeLessThan(20);
          expect(chainRules(await ns.natSave(b), "EDGEMESH-SERVICES")).toEqual([expect.stringContaining("-d 10.96.1.20/32")]);
          expect((await ourRoutes(ns)).map((l) => l.split(" ")[0])).toEqual(["10.96.1.20"]);
        } finally {
          await h.module.stop();
        }
      });
    });

    test("an entry outside the command grammar costs only its own rule", async () => {
      await withNetns(async (ns) => {
        const h = proxierIn(ns, b);
        await h.module.start();
        try {
          await h.publish(table(1, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 70000 }, { clusterIPs: ["10.96.0.11\nCOMMIT"], port: 80, listenPort: 40002 }, { clusterIPs: ["10.96.0.12"], port: 80, listenPort: 40001 }]));
          expect(h.status().lastError).toBeUndefined();
          const rules = chainRules(await ns.natSave(b), "EDGEMESH-SERVICES");
          expect(rules).toHaveLength(1);
          expect(rules[0]).toContain("10.96.0.12/32");
        } finally {
          await h.module.stop();
        }
      });
    });

    test("a table iptables refuses is counted, reported in status, and a good table recovers", async () => {
      await withNetns(async (ns) => {
        // iptables-restore refuses the table that carries port 81 (as a kernel without a match module would)
        const exec: typeof ns.exec = (argv, opts) =>
          argv[0] === b.restore && String(opts?.stdin ?? "").includes("--dport 81 ") ? Promise.resolve({ code: 2, stdout: "", stderr: "iptables-restore: line 2 failed\n" }) : ns.exec(argv, opts);
        const h = proxierIn(ns, b, { exec });
        await h.module.start();
        try {
          h.bus.publish("listeners", table(1, [{ clusterIPs: ["10.96.0.10"], port: 81, listenPort: 40001 }]));
          await until(() => (h.status().lastError ? true : undefined));
          expect(h.status().lastError).toMatch(/^rules: .*--noflush/);
          expect(h.metrics.counter("proxier_apply_errors_total", "").get({ stage: "rules" })).toBe(1);
          await h.publish(table(2, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }]));
          expect(h.status().lastError).toBeUndefined();
          expect(chainRules(await ns.natSave(b), "EDGEMESH-SERVICES")).toHaveLength(1);
        } finally {
          await h.module.stop();
        }
      });
    });

    test("a connection to a ClusterIP from inside the namespace reaches the listener (route + OUTPUT DNAT)", async () => {
      await withNetns(async (ns) => {
        const h = proxierIn(ns, b);
        await h.module.start();
        const server = await serveIn(ns, BRIDGE_IP, 40001);
        try {
          // No default route in the namespace: without our route this is "Network unreachable".
          expect((await connectIn(ns, "10.96.0.10", 80)).code).not.toBe(0);
          await h.publish(table(1, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }]));
          const c = await connectIn(ns, "10.96.0.10", 80);
          expect(c).toEqual({ code: 0, out: "hello from listener" });
          expect(await server.accepted()).toBe(`accepted ${BRIDGE_IP}:40001`);
        } finally {
          server.kill();
          await h.module.stop();
        }
      });
    });

    test("a jump pushed below kube-proxy's after start is put back first by the periodic check", async () => {
      await withNetns(async (ns) => {
        const h = proxierIn(ns, b, { resyncMs: 100 });
        await h.module.start();
        try {
          // kube-proxy starting after us inserts its jump at the top.
          await ns.exec([b.restore, "--noflush"], { stdin: FOREIGN_NAT.replace(/-A (PREROUTING|OUTPUT) -m comment/g, "-I $1 1 -m comment") });
          expect(parseRule(chainRules(await ns.natSave(b), "OUTPUT")[0]!)?.target).toBe("KUBE-SERVICES");
          await until(async () => (parseRule(chainRules(await ns.natSave(b), "OUTPUT")[0]!)?.target === "EDGEMESH-OUTPUT" ? true : undefined), 5000);
          const save = await ns.natSave(b);
          expect(parseRule(chainRules(save, "PREROUTING")[0]!)?.target).toBe("EDGEMESH-PREROUTING");
          expect(chainRules(save, "OUTPUT").filter((r) => r.includes("EDGEMESH"))).toHaveLength(1);
          expect(h.logs.join("")).toContain("iptables jumps were missing or not first; restored");
        } finally {
          await h.module.stop();
        }
      });
    });

    test("the nat table flushed, or our chains deleted, by something else: the periodic check restores rules and jumps", async () => {
      await withNetns(async (ns) => {
        const h = proxierIn(ns, b, { resyncMs: 100 });
        await h.module.start();
        try {
          await h.publish(table(1, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }, { clusterIPs: ["10.96.0.11"], port: 81, listenPort: 40002 }]));
          const want = (await ns.natSave(b)).filter((l) => l.includes("EDGEMESH")).sort();
          const restored = () => until(async () => (JSON.stringify((await ns.natSave(b)).filter((l) => l.includes("EDGEMESH")).sort()) === JSON.stringify(want) ? true : undefined), 5000);
          // a firewall reload: every nat chain flushed, ours included
          await ns.exec([b.iptables, "-t", "nat", "-F"]);
          await restored();
          expect(h.logs.join("")).toContain("nat rules were changed by something else; restored");
          // worse: our chains deleted too, in one transaction (as a firewall
          // reload does; -F then -X could race the periodic check re-adding jumps)
          await ns.exec([b.restore], { stdin: "*nat\nCOMMIT\n" });
          await restored();
          expect(h.logs.join("")).not.toContain("nat jump check failed");
        } finally {
          await h.module.stop();
        }
      });
    });

    test("1,000 services × 2 ports: one apply well under 5 s", async () => {
      await withNetns(async (ns) => {
        const h = proxierIn(ns, b);
        await h.module.start();
        try {
          const t0 = performance.now();
          await h.publish(bigTable(1, 1000));
          const total = performance.now() - t0;
          const s = h.status();
          expect(s.rules).toBe(2000);
          expect(chainRules(await ns.natSave(b), "EDGEMESH-SERVICES")).toHaveLength(2000);
          // A second, different table of the same size (every listen port moves).
          const again = bigTable(2, 1000);
          for (const e of again.entries) e.listenPort += 1;
          const t1 = performance.now();
          await h.publish(again);
          const replace = performance.now() - t1;
          console.log(
            `proxier (${b.name}): 2000 interceptions (2000 DNAT rules): first apply ${s.lastApplyMs} ms (with 1000 routes ${total.toFixed(0)} ms), replace ${h.status().lastApplyMs} ms (total ${replace.toFixed(0)} ms)`,
          );
          expect(s.lastApplyMs).toBeLessThan(5000);
          expect(h.status().lastApplyMs).toBeLessThan(5000);
        } finally {
          await h.module.stop();
        }
        expect(ours(await ns.natSave(b))).toEqual([]);
        expect(await ourRoutes(ns)).toEqual([]);
      });
    });
  });
}
