// The pure parts of hole-punch coordination: what may be said on the wire,
// who starts, when to try again.
import { describe, expect, test } from "bun:test";
import { encodePunchMessage, hostPortOf, type PunchMessage, initiates, retryDelayMs, splitHostPort, validatePunchMessage } from "../../src/agent/tunnel/punch-protocol.ts";
import { FrameReader } from "../../src/tunnel/proxy/frame.ts";

describe("punch messages", () => {
  test("CONNECT with host:port addresses and SYNC round-trip through the proxy framing", () => {
    const messages: PunchMessage[] = [{ type: "connect", addrs: ["192.0.2.11:20006", "[2001:db8::1]:20006"] }, { type: "connect", addrs: [] }, { type: "sync" }];
    for (const m of messages) {
      const frame = encodePunchMessage(m);
      const body = new FrameReader().read(frame).frame!;
      expect(validatePunchMessage(JSON.parse(new TextDecoder().decode(body)))).toEqual(m);
    }
  });
  test("anything else is refused: other types, names instead of addresses, too many addresses", () => {
    for (const bad of [{ type: "hello" }, { type: "connect", addrs: ["example.com:80"] }, { type: "connect", addrs: "1.2.3.4:5" }, { type: "connect", addrs: Array(9).fill("1.2.3.4:5") }, null, 7]) {
      expect(() => validatePunchMessage(bad)).toThrow(/not a punch message/);
    }
  });
});

test("exactly one side of a pair starts", () => {
  const a = "12D3KooWA";
  const b = "12D3KooWB";
  expect(initiates(a, b)).toBe(true);
  expect(initiates(b, a)).toBe(false);
});

test("after failed rounds: 30 s, doubling, capped at 15 min", () => {
  expect([1, 2, 3, 4, 5, 6, 7, 20].map(retryDelayMs)).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000, 900_000]);
});

test("addresses: host:port from a TCP multiaddr and back", () => {
  expect(hostPortOf("/ip4/192.0.2.11/tcp/20006/p2p/12D3KooWA")).toBe("192.0.2.11:20006");
  expect(hostPortOf("/ip6/2001:db8::1/tcp/20006")).toBe("[2001:db8::1]:20006");
  expect(hostPortOf("/dns/example.com/tcp/1")).toBeUndefined();
  expect(splitHostPort("[2001:db8::1]:20006")).toEqual({ host: "2001:db8::1", port: 20006 });
});

test("CONNECT carries the sender's NAT mapping behaviour; an unknown value (a newer agent's) is left out, not refused", () => {
  const m: PunchMessage = { type: "connect", addrs: ["192.0.2.11:20006"], nat: "endpoint-dependent" };
  const body = new FrameReader().read(encodePunchMessage(m)).frame!;
  expect(validatePunchMessage(JSON.parse(new TextDecoder().decode(body)))).toEqual(m);
  expect(validatePunchMessage({ type: "connect", addrs: [], nat: "full-cone" })).toEqual({ type: "connect", addrs: [] });
  expect(validatePunchMessage({ type: "connect", addrs: [], nat: { x: 1 } })).toEqual({ type: "connect", addrs: [] });
});
