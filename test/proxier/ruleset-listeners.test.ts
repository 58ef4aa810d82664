import { expect, test } from "bun:test";
import { interceptionsFromListeners, listenerRuleset, natRuleset } from "../../src/agent/proxier/ruleset.ts";
import { table } from "./fixtures.ts";

test("a listener table becomes one interception per IPv4 ClusterIP, through natRuleset", () => {
  const t = table(3, [
    { service: "demo/web", portName: "http", clusterIPs: ["10.96.0.10", "fd00::10"], port: 80, listenPort: 40001 },
    { service: "demo/dns", portName: "", clusterIPs: ["10.96.0.2"], port: 53, protocol: "UDP", listenPort: 40002 },
  ]);
  const list = interceptionsFromListeners(t.entries);
  expect(list).toEqual([
    { service: "demo/web:http", clusterIP: "10.96.0.10", port: 80, protocol: "TCP", listenPort: 40001 },
    { service: "demo/dns:53", clusterIP: "10.96.0.2", port: 53, protocol: "UDP", listenPort: 40002 },
  ]);
  const r = listenerRuleset(t);
  expect(r).toEqual({ text: natRuleset(list, t.bridgeIP), interceptions: 2 });
  expect(r.text).toContain('-A EDGEMESH-SERVICES -d 10.96.0.2/32 -p udp -m udp --dport 53 -m comment --comment "demo/dns:53" -j DNAT --to-destination 169.254.96.16:40002');
});

test("an empty table still declares (and so empties) both chains", () => {
  expect(listenerRuleset(table(1, [])).text).toBe(
    "*nat\n:EDGEMESH-PREROUTING - [0:0]\n:EDGEMESH-OUTPUT - [0:0]\n:EDGEMESH-SERVICES - [0:0]\n-A EDGEMESH-PREROUTING -j EDGEMESH-SERVICES\n-A EDGEMESH-OUTPUT -j EDGEMESH-SERVICES\nCOMMIT\n",
  );
});
