import { expect, test } from "bun:test";
import { interceptions, listenerKey, natRuleset, natRulesetDelta } from "../src/agent/proxier/ruleset.ts";
import type { Service } from "../src/model/index.ts";
import { service } from "./util/service.ts";

const svc = (name: string, extra: Partial<Service>): Service =>
  service({ name, clusterIPs: ["10.96.0.10"], ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }], ...extra });

test("a ruleset is our two chains, filled whole, DNAT per ClusterIP:port/proto", () => {
  const services = [
    svc("web", {}),
    svc("dns", { clusterIPs: ["10.96.0.2"], ports: [{ name: "dns", port: 53, protocol: "UDP", targetPort: 53 }, { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 53 }] }),
    svc("headless", { clusterIPs: [], headless: true }),
    svc("ext", { type: "ExternalName", clusterIPs: [] }),
    svc("v6", { clusterIPs: ["fd00::1"] }),
  ];
  const ports = new Map([
    [listenerKey({ namespace: "demo", name: "web" }, 80, "TCP"), 40001],
    [listenerKey({ namespace: "demo", name: "dns" }, 53, "UDP"), 40002],
    [listenerKey({ namespace: "demo", name: "dns" }, 53, "TCP"), 40003],
  ]);
  const text = natRuleset(interceptions(services, (k) => ports.get(k)), "169.254.96.16");
  expect(text).toBe(
    [
      "*nat",
      ":EDGEMESH-PREROUTING - [0:0]",
      ":EDGEMESH-OUTPUT - [0:0]",
      ":EDGEMESH-SERVICES - [0:0]",
      "-A EDGEMESH-PREROUTING -j EDGEMESH-SERVICES",
      "-A EDGEMESH-OUTPUT -j EDGEMESH-SERVICES",
      '-A EDGEMESH-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "demo/web:http" -j DNAT --to-destination 169.254.96.16:40001',
      '-A EDGEMESH-SERVICES -d 10.96.0.2/32 -p tcp -m tcp --dport 53 -m comment --comment "demo/dns:dns-tcp" -j DNAT --to-destination 169.254.96.16:40003',
      '-A EDGEMESH-SERVICES -d 10.96.0.2/32 -p udp -m udp --dport 53 -m comment --comment "demo/dns:dns" -j DNAT --to-destination 169.254.96.16:40002',
      "COMMIT",
      "",
    ].join("\n"),
  );
});

test("no services: the chains are declared and emptied", () => {
  expect(natRuleset([], "169.254.96.16")).toBe(
    "*nat\n:EDGEMESH-PREROUTING - [0:0]\n:EDGEMESH-OUTPUT - [0:0]\n:EDGEMESH-SERVICES - [0:0]\n-A EDGEMESH-PREROUTING -j EDGEMESH-SERVICES\n-A EDGEMESH-OUTPUT -j EDGEMESH-SERVICES\nCOMMIT\n",
  );
});

test("a change is a delta: only the rules that differ are deleted or appended; nothing → empty; another layout → whole ruleset", () => {
  const one = [{ service: "demo/web:http", clusterIP: "10.96.0.10", port: 80, protocol: "TCP" as const, listenPort: 40001 }];
  const two = [...one, { service: "demo/api:http", clusterIP: "10.96.0.11", port: 8080, protocol: "TCP" as const, listenPort: 40002 }];
  const a = natRuleset(one, "169.254.96.16");
  const b = natRuleset(two, "169.254.96.16");
  const added = natRulesetDelta(a, b)!;
  expect(added.split("\n")).toEqual(["*nat", '-A EDGEMESH-SERVICES -d 10.96.0.11/32 -p tcp -m tcp --dport 8080 -m comment --comment "demo/api:http" -j DNAT --to-destination 169.254.96.16:40002', "COMMIT", ""]);
  const removed = natRulesetDelta(b, a)!;
  expect(removed.split("\n")[1]).toBe('-D EDGEMESH-SERVICES -d 10.96.0.11/32 -p tcp -m tcp --dport 8080 -m comment --comment "demo/api:http" -j DNAT --to-destination 169.254.96.16:40002');
  // a listener port that moved: the old rule goes, the new one comes, in one transaction
  const moved = natRulesetDelta(a, natRuleset([{ ...one[0]!, listenPort: 40009 }], "169.254.96.16"))!.split("\n");
  expect(moved.map((l) => l.slice(0, 2))).toEqual(["*n", "-D", "-A", "CO", ""]);
  expect(natRulesetDelta(a, a)).toBe("");
  expect(natRulesetDelta(a, natRuleset(one, "169.254.96.99").replace(":EDGEMESH-OUTPUT - [0:0]\n", ""))).toBeUndefined();
});

test("punch filter ruleset: drops only unreachables about TCP from the tunnel port, never 'fragmentation needed'; refuses values outside the grammar", async () => {
  const { punchIcmpRuleset } = await import("../src/agent/proxier/commands.ts");
  const text = punchIcmpRuleset("EDGEMESH-PUNCH", 20006);
  const rules = text.split("\n").filter((l) => l.startsWith("-A "));
  expect(rules.length).toBeGreaterThanOrEqual(3);
  for (const r of rules) {
    expect(r).toMatch(/^-A EDGEMESH-PUNCH -p icmp -m icmp --icmp-type 3\/\d+ -m conntrack --ctstate RELATED --ctproto tcp --ctorigsrcport 20006 .* -j DROP$/);
    expect(r).not.toContain("--icmp-type 3/4 ");
  }
  expect(rules.some((r) => r.includes("--icmp-type 3/3 "))).toBe(true);
  expect(text.startsWith("*filter\n:EDGEMESH-PUNCH - [0:0]\n")).toBe(true);
  expect(text.endsWith("COMMIT\n")).toBe(true);
  expect(() => punchIcmpRuleset("EDGEMESH-PUNCH", 0)).toThrow(/grammar/);
  expect(() => punchIcmpRuleset("EDGEMESH-PUNCH", 70000)).toThrow(/grammar/);
  expect(() => punchIcmpRuleset("X; rm -rf /", 20006)).toThrow(/grammar/);
});
