// PeerLink: framing, the bound on what waits for a busy stream, and the move
// to the connection the tunnel prefers (relayed → direct).
import { expect, test } from "bun:test";
import { PeerLink } from "../src/agent/podnet/peer-link.ts";
import { UnitDecoder } from "../src/agent/podnet/unit-frames.ts";
import type { NodeStream, TunnelAccess } from "../src/model/tunnel.ts";
import { createLogger } from "../src/log.ts";

const log = createLogger("test", "error");

/** a stream that records what it is sent; `accept` false makes it report backpressure until drain() */
function fakeStream(accept = () => true) {
  const sent: Uint8Array[] = [];
  const listeners = new Map<string, Array<() => void>>();
  const s = {
    status: "open",
    writeStatus: "writable",
    writeBufferLength: 0,
    sent,
    send: (b: Uint8Array) => {
      sent.push(b.slice());
      return accept();
    },
    addEventListener: (t: string, fn: () => void) => listeners.set(t, [...(listeners.get(t) ?? []), fn]),
    removeEventListener: (t: string, fn: () => void) => listeners.set(t, (listeners.get(t) ?? []).filter((f) => f !== fn)),
    close: async () => void (s.status = "closed"),
    abort: () => void (s.status = "aborted"),
    drain: () => (listeners.get("drain") ?? []).forEach((f) => f()),
  };
  return s;
}

function fakeTunnel(streams: Array<ReturnType<typeof fakeStream>>, preferred: { id: string }) {
  let n = 0;
  const t: TunnelAccess = {
    open: () => Promise.reject(new Error("unused")),
    handle: async () => {},
    preferredConnection: () => preferred.id,
    openRelayStream: () => Promise.reject(new Error("unused")),
    servers: () => [],
    openStream: async () => ({ stream: streams[n] as never, connectionId: preferred.id, path: preferred.id === "direct" ? "direct" : "relayed", n: n++ }) as NodeStream,
  };
  return t;
}

const packets = (s: ReturnType<typeof fakeStream>) => {
  const d = new UnitDecoder();
  return s.sent.flatMap((c) => d.push(c)).map((p) => p[0]);
};
const tick = () => new Promise((r) => setTimeout(r, 5));

test("packets go out framed and in order, in few sends", async () => {
  const s = fakeStream();
  const link = new PeerLink("edge2", fakeTunnel([s], { id: "relayed" }), 1 << 20, log, () => {});
  for (let i = 0; i < 100; i++) link.send(new Uint8Array(1400).fill(i));
  link.flush();
  await tick();
  expect(packets(s)).toEqual([...Array(100).keys()]);
  expect(s.sent.length).toBeLessThan(10);
  expect(link.counters.packetsOut).toBe(100);
});

test("a busy stream: packets wait up to the bound, the rest are dropped and counted; drain sends the waiting ones", async () => {
  let busy = true;
  const s = fakeStream(() => !busy);
  const drops: string[] = [];
  const link = new PeerLink("edge2", fakeTunnel([s], { id: "relayed" }), 16 * 1024, log, (r, n) => drops.push(`${r}:${n}`));
  link.send(new Uint8Array(1000).fill(0));
  link.flush();
  await tick(); // first send: the stream reports backpressure
  for (let i = 1; i <= 40; i++) {
    link.send(new Uint8Array(1000).fill(i));
    link.flush();
  }
  await tick();
  // 16 KiB holds 16 framed packets of 1000 bytes (and their 4-byte lengths); 24 dropped
  expect(drops.length).toBe(24);
  expect(drops.every((d) => d === "queue:1")).toBe(true);
  busy = false;
  s.drain();
  await tick();
  expect(packets(s)).toEqual([...Array(17).keys()]);
});

test("when the tunnel prefers another connection, the next packets go on a new stream over it", async () => {
  const relayed = fakeStream();
  const direct = fakeStream();
  const preferred = { id: "relayed" };
  const link = new PeerLink("edge2", fakeTunnel([relayed, direct], preferred), 1 << 20, log, () => {});
  link.send(new Uint8Array(100).fill(1));
  link.flush();
  await tick();
  expect(link.path).toBe("relayed");
  preferred.id = "direct";
  // the path is checked at most every 100 ms
  await Bun.sleep(120);
  link.send(new Uint8Array(100).fill(2));
  link.flush();
  await tick();
  expect(link.path).toBe("direct");
  expect(packets(relayed)).toEqual([1]);
  expect(packets(direct)).toEqual([2]);
  expect(relayed.status).toBe("closed");
});

test("unit framing: u32 lengths, units split anywhere across chunks, a 64 KiB GSO unit fits, a larger one is refused", async () => {
  const { UnitTooLargeError, writeLen } = await import("../src/agent/podnet/unit-frames.ts");
  const units = [new Uint8Array(65_545).fill(7), new Uint8Array(3).fill(1), new Uint8Array(0), new Uint8Array(1400).fill(2)];
  const wire = new Uint8Array(units.reduce((n, u) => n + 4 + u.byteLength, 0));
  let off = 0;
  for (const u of units) {
    writeLen(wire, off, u.byteLength);
    wire.set(u, off + 4);
    off += 4 + u.byteLength;
  }
  for (const step of [1, 3, 5, 1000, wire.byteLength]) {
    const d = new UnitDecoder();
    const got: Uint8Array[] = [];
    for (let i = 0; i < wire.byteLength; i += step) got.push(...d.push(wire.subarray(i, i + step)).map((u) => u.slice()));
    expect(got.map((u) => [u.byteLength, u[0]])).toEqual([[65_545, 7], [3, 1], [1400, 2]]);
  }
  const big = new Uint8Array(8);
  writeLen(big, 0, 70_000);
  expect(() => new UnitDecoder().push(big)).toThrow(UnitTooLargeError);
});

test("the connection in use is told again at path checks while packets flow (a lane lost on an unchanged path is offered anew)", async () => {
  const s = fakeStream();
  const told: string[] = [];
  const link = new PeerLink("edge2", fakeTunnel([s], { id: "direct" }), 1 << 20, log, () => {}, (ns) => told.push(ns.connectionId));
  link.send(new Uint8Array(100));
  link.flush();
  await tick();
  expect(told).toEqual(["direct"]);
  // the path check runs at most every 100 ms
  await Bun.sleep(120);
  link.send(new Uint8Array(100));
  link.flush();
  expect(told).toEqual(["direct", "direct"]);
  link.close();
});
