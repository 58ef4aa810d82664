// The relay's STOP step, wrapped: a source peer may have at most
// maxRelayedConnectionsPerPeer relayed connections open; more are refused
// (the relay answers CONNECTION_FAILED) and counted, and a slot comes back
// when one closes. Another source is unaffected.
import { expect, test } from "bun:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { manageRelayedFlows, type RelayCounters } from "../src/tunnel/relayed-flows.ts";

function fakeStream() {
  const listeners: Array<() => void> = [];
  return {
    addEventListener: (_: string, f: () => void) => void listeners.push(f),
    close: () => listeners.splice(0).forEach((f) => f()),
  };
}

test("a source past maxRelayedConnectionsPerPeer is refused and counted; closing one frees a slot", async () => {
  const streams: Array<ReturnType<typeof fakeStream>> = [];
  const relay = {
    stopHop: async () => {
      const s = fakeStream();
      streams.push(s);
      return s;
    },
  };
  const node = { services: { relay }, getConnections: () => [] };
  const counters: RelayCounters = { connections: 0, active: 0, bytes: 0, pauses: 0, refused: 0 };
  const refusedFrom: string[] = [];
  manageRelayedFlows(node as never, counters, 2, (src) => void refusedFrom.push(src));
  const a = peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
  const b = peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
  const hop = (p: typeof a) => (relay.stopHop as (o: unknown) => Promise<unknown>)({ request: { peer: { id: p.toMultihash().bytes } } });
  expect(await hop(a)).toBeDefined();
  expect(await hop(a)).toBeDefined();
  expect(await hop(a)).toBeUndefined();
  expect(counters.refused).toBe(1);
  expect(refusedFrom).toEqual([a.toString()]);
  expect(await hop(b)).toBeDefined();
  streams[0]!.close();
  expect(await hop(a)).toBeDefined();
  expect(counters).toMatchObject({ connections: 4, active: 3, refused: 1 });
});
