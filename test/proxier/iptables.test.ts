// Iptables against both backends, inside a namespace, next to foreign rules.
import { describe, expect, test } from "bun:test";
import { Iptables, parseRule, words } from "../../src/agent/proxier/iptables.ts";
import { listenerRuleset, natRuleset, natRulesetDelta } from "../../src/agent/proxier/ruleset.ts";
import { availableBackends, withNetns, type Netns } from "./netns.ts";
import { BRIDGE_IP, FOREIGN_NAT, chainRules, foreign, table } from "./fixtures.ts";

test("words keeps quoted comments whole; parseRule finds chain and target", () => {
  const l = '-A PREROUTING -m comment --comment "a -j B" -j EDGEMESH-PREROUTING';
  expect(words(l)).toEqual(["-A", "PREROUTING", "-m", "comment", "--comment", "a -j B", "-j", "EDGEMESH-PREROUTING"]);
  expect(parseRule(l)).toEqual({ chain: "PREROUTING", target: "EDGEMESH-PREROUTING" });
  expect(parseRule("-N KUBE-SERVICES")).toBeUndefined();
});

const backends = await availableBackends();

for (const b of backends) {
  describe(`iptables (${b.name})`, () => {
    const make = (ns: Netns) => new Iptables({ iptables: b.iptables, restore: b.restore, exec: ns.exec });

    test("applies our chains, jumps first ahead of KUBE-SERVICES, other chains untouched", async () => {
      await withNetns(async (ns) => {
        await ns.exec([b.restore], { stdin: FOREIGN_NAT });
        const before = await ns.natSave(b);
        const ipt = make(ns);
        const t = table(1, [
          { clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 },
          { clusterIPs: ["10.96.0.11"], port: 53, protocol: "UDP", listenPort: 40002 },
        ]);
        await ipt.apply(listenerRuleset(t).text);
        expect(await ipt.ensureJumps()).toBe(true);
        const after = await ns.natSave(b);

        expect(foreign(after)).toEqual(foreign(before));
        for (const [chain, ourChain] of [["PREROUTING", "EDGEMESH-PREROUTING"], ["OUTPUT", "EDGEMESH-OUTPUT"]] as const) {
          const rules = chainRules(after, chain);
          expect(parseRule(rules[0]!)?.target).toBe(ourChain);
          expect(rules.filter((r) => r.includes(ourChain))).toHaveLength(1);
          // each entry chain holds one jump to the shared DNAT chain
          expect(chainRules(after, ourChain).map((r) => parseRule(r)?.target)).toEqual(["EDGEMESH-SERVICES"]);
        }
        const dnat = chainRules(after, "EDGEMESH-SERVICES");
        expect(dnat).toHaveLength(2);
        expect(dnat.join("\n")).toContain(`-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "demo/svc0:p80" -j DNAT --to-destination ${BRIDGE_IP}:40001`);
        expect(dnat.join("\n")).toContain(`-d 10.96.0.11/32 -p udp -m udp --dport 53 -m comment --comment "demo/svc1:p53" -j DNAT --to-destination ${BRIDGE_IP}:40002`);

        // Idempotent: no second jump.
        expect(await ipt.ensureJumps()).toBe(false);
        expect(await ns.natSave(b)).toEqual(after);
      });
    });

    test("a second ruleset replaces the first whole: no leftover rule", async () => {
      await withNetns(async (ns) => {
        const ipt = make(ns);
        await ipt.apply(listenerRuleset(table(1, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }, { clusterIPs: ["10.96.0.12"], port: 8080, listenPort: 40003 }])).text);
        await ipt.ensureJumps();
        await ipt.apply(listenerRuleset(table(2, [{ clusterIPs: ["10.96.0.20"], port: 443, listenPort: 40005 }])).text);
        await ipt.ensureJumps();
        const save = await ns.natSave(b);
        const rules = chainRules(save, "EDGEMESH-SERVICES");
        expect(rules).toHaveLength(1);
        expect(rules[0]).toContain(`-d 10.96.0.20/32 -p tcp -m tcp --dport 443`);
        for (const chain of ["EDGEMESH-PREROUTING", "EDGEMESH-OUTPUT"]) expect(chainRules(save, chain)).toHaveLength(1);
      });
    });

    test("a delta (one service added, one port moved, one removed) leaves the chain exactly as the whole ruleset would", async () => {
      await withNetns(async (ns) => {
        const ipt = make(ns);
        const before = listenerRuleset(table(1, [
          { clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 },
          { clusterIPs: ["10.96.0.11"], port: 53, protocol: "UDP", listenPort: 40002 },
        ])).text;
        const after = listenerRuleset(table(2, [
          { clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40005 },
          { clusterIPs: ["10.96.0.12"], port: 443, listenPort: 40003 },
        ])).text;
        await ipt.apply(after);
        const whole = await ipt.list("EDGEMESH-SERVICES");
        await ipt.apply(before);
        await ipt.apply(natRulesetDelta(before, after)!);
        expect((await ipt.list("EDGEMESH-SERVICES"))!.sort()).toEqual(whole!.sort());
      });
    });

    test("a jump pushed down (kube-proxy inserted ahead) or doubled is put back first, once", async () => {
      await withNetns(async (ns) => {
        const ipt = make(ns);
        await ipt.apply(natRuleset([], BRIDGE_IP));
        await ipt.ensureJumps();
        await ns.exec([b.restore, "--noflush"], { stdin: FOREIGN_NAT.replace(/-A (PREROUTING|OUTPUT) -m comment/g, "-I $1 1 -m comment") });
        await ns.exec([b.iptables, "-t", "nat", "-A", "OUTPUT", "-j", "EDGEMESH-OUTPUT"]);
        const before = foreign(await ns.natSave(b));
        expect(parseRule(chainRules(await ns.natSave(b), "PREROUTING")[0]!)?.target).toBe("KUBE-SERVICES");

        expect(await ipt.ensureJumps()).toBe(true);
        const save = await ns.natSave(b);
        expect(foreign(save)).toEqual(before);
        for (const [chain, ourChain] of [["PREROUTING", "EDGEMESH-PREROUTING"], ["OUTPUT", "EDGEMESH-OUTPUT"]] as const) {
          const rules = chainRules(save, chain);
          expect(parseRule(rules[0]!)?.target).toBe(ourChain);
          expect(rules.filter((r) => parseRule(r)?.target === ourChain)).toHaveLength(1);
        }
      });
    });

    test("removeAll removes our jumps (all copies) and chains, nothing else", async () => {
      await withNetns(async (ns) => {
        await ns.exec([b.restore], { stdin: FOREIGN_NAT });
        const before = await ns.natSave(b);
        const ipt = make(ns);
        await ipt.apply(listenerRuleset(table(1, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }])).text);
        await ipt.ensureJumps();
        await ns.exec([b.iptables, "-t", "nat", "-A", "PREROUTING", "-j", "EDGEMESH-PREROUTING"]);
        expect(await ipt.removeAll()).toEqual({ jumps: 3, chains: 3 });
        expect(await ns.natSave(b)).toEqual(before);
        expect(await ipt.removeAll()).toEqual({ jumps: 0, chains: 0 });
      });
    });

    test("a rejected ruleset fails with the command, stderr and offending line, and changes nothing", async () => {
      await withNetns(async (ns) => {
        const ipt = make(ns);
        await ipt.apply(listenerRuleset(table(1, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }])).text);
        const before = await ns.natSave(b);
        const bad = listenerRuleset(table(2, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }])).text.replace("-j DNAT", "-j NO-SUCH-TARGET");
        const err = await ipt.apply(bad).catch((e: Error) => e);
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toContain(`${b.restore} -w 5 --noflush`);
        expect((err as Error).message).toMatch(/input line 7: -A EDGEMESH-SERVICES/);
        expect(await ns.natSave(b)).toEqual(before);
      });
    });
  });
}

test("both backends are installed here (Debian's iptables package ships them)", () => {
  expect(backends.map((b) => b.name).sort()).toEqual(["legacy", "nft"]);
});

for (const b of backends) {
  test(`a jump to a missing chain is reported with the input line the backend blames (${b.name})`, async () => {
    await withNetns(async (ns) => {
      const ipt = new Iptables({ iptables: b.iptables, restore: b.restore, exec: ns.exec });
      const text = ["*nat", ":EDGEMESH-OUTPUT - [0:0]", "-A EDGEMESH-OUTPUT -j NO-SUCH-CHAIN", "COMMIT", ""].join("\n");
      const err = (await ipt.apply(text).catch((e: Error) => e)) as Error;
      expect(err.message).toMatch(/\(input line \d: .+\)$/);
      expect(err.message).toContain("NO-SUCH-CHAIN");
    });
  });
}
