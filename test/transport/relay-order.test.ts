// Which relay a relayed dial tries first, and which connections new streams
// may take.
import { expect, test } from "bun:test";
import { multiaddr } from "@multiformats/multiaddr";
import { nearestFirst, relayOf } from "../../src/agent/tunnel/dialer.ts";

const relay = (name: string, rtt: number) => ({ name, rttMs: () => rtt });

test("relays are tried nearest first; those without an RTT yet come last, in the configured order", () => {
  const order = nearestFirst([relay("cloud-a", 80), relay("new", Infinity), relay("site-gw", 3), relay("cloud-b", 40), relay("other-new", Infinity)]).map((r) => r.name);
  expect(order).toEqual(["site-gw", "cloud-b", "cloud-a", "new", "other-new"]);
  expect(nearestFirst([relay("a", 5), relay("b", 5)]).map((r) => r.name)).toEqual(["a", "b"]);
});

test("the relay a circuit address goes through", () => {
  expect(relayOf(multiaddr("/ip4/192.0.2.10/tcp/20004/p2p/12D3KooWRelay/p2p-circuit/p2p/12D3KooWPeer"))).toBe("12D3KooWRelay");
  expect(relayOf(multiaddr("/ip4/192.0.2.10/tcp/20006/p2p/12D3KooWPeer"))).toBeUndefined();
});
