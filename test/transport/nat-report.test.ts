// Classifying our NAT's mapping from what the observers (tunnel servers,
// relay agents) saw of us.
import { expect, test } from "bun:test";
import { classifyNat } from "../../src/agent/tunnel/nat-report.ts";

const obs = (...addresses: string[]) => addresses.map((address, i) => ({ observer: `server s${i}`, address }));

test("no observer, or only one: unknown (one observer says whether the port was kept, as a hint)", () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /no tunnel server/],
    [["192.0.2.11:20006"], /port preserved.*second/],
    [["192.0.2.11:41234"], /port changed from 20006/],
  ];
  for (const [addrs, detail] of cases) {
    const r = classifyNat(obs(...addrs), 20006);
    expect(r.mapping).toBe("unknown");
    expect(r.detail).toMatch(detail);
  }
});

test("two or more observers seeing one address: endpoint-independent, whether or not the port was kept", () => {
  expect(classifyNat(obs("192.0.2.11:20006", "192.0.2.11:20006"), 20006).mapping).toBe("endpoint-independent");
  expect(classifyNat(obs("192.0.2.11:41234", "192.0.2.11:41234", "192.0.2.11:41234"), 20006).mapping).toBe("endpoint-independent");
});

test("observers seeing different ports (or addresses): endpoint-dependent, and status says punching cannot work", () => {
  const r = classifyNat(obs("192.0.2.11:41234", "192.0.2.11:52011"), 20006);
  expect(r.mapping).toBe("endpoint-dependent");
  expect(r.detail).toMatch(/hole punching cannot work/);
  expect(classifyNat(obs("192.0.2.11:20006", "198.51.100.7:20006"), 20006).mapping).toBe("endpoint-dependent");
});
