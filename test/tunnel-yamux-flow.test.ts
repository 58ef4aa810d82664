// Flow control in our yamux stream patches: a paused reader grants nothing,
// windows grow only within the process's budget and give it back, data
// frames are at most one noise message, and a stream stops sending while its
// connection is full.
import { expect, test } from "bun:test";
import { StreamState, YamuxStream } from "@chainsafe/libp2p-yamux/stream";
import { Uint8ArrayList } from "uint8arraylist";
import { patchYamuxStreams, flowControlledYamux, MAX_FRAME_BYTES } from "../src/tunnel/yamux-window.ts";
import { WindowBudget, windowBudget } from "../src/tunnel/flow/budget.ts";

const W = 256 * 1024;
type Frame = { type: number; flag: number; length: number };

function fakeStream(o: { recvWindow?: number; capacity?: number; readStatus?: string; rtt?: number; max?: number } = {}) {
  const frames: Frame[] = [];
  const listeners: Array<() => void> = [];
  const s = Object.create(YamuxStream.prototype) as Record<string, unknown>;
  Object.assign(s, {
    state: StreamState.Established,
    readStatus: o.readStatus ?? "readable",
    recvWindow: o.recvWindow ?? W,
    recvWindowCapacity: o.capacity ?? W,
    maxStreamWindowSize: o.max ?? 4 * 1024 * 1024,
    epochStart: Date.now(),
    streamId: 1,
    sendWindowCapacity: 0,
    getRTT: () => o.rtt ?? -1,
    sendFrame: (f: Frame) => frames.push(f) > 0,
    addEventListener: (_t: string, fn: () => void) => listeners.push(fn),
  });
  const st = s as unknown as { sendWindowUpdate(): void; sendData(b: Uint8ArrayList): { sentBytes: number; canSendMore: boolean }; recvWindow: number; recvWindowCapacity: number; sendWindowCapacity: number; readStatus: string };
  return { s: st, raw: s, frames, close: () => listeners.forEach((fn) => fn()) };
}

test("a reader paused again while its buffered data was handed over grants no window, although yamux thinks it is established", () => {
  patchYamuxStreams();
  const { s, frames } = fakeStream({ readStatus: "paused", capacity: 0 });
  s.sendWindowUpdate();
  expect(frames).toHaveLength(0);
  s.readStatus = "readable";
  s.sendWindowUpdate();
  expect(frames).toEqual([expect.objectContaining({ type: 1, length: W })]);
});

test("a window grows (a fast reader) only while the budget lasts, and the budget comes back when the stream closes", () => {
  patchYamuxStreams();
  const before = windowBudget.limit;
  windowBudget.limit = windowBudget.counters().grantedBytes + W; // room for one doubling
  try {
    const a = fakeStream({ capacity: W / 2, rtt: 1000 });
    a.s.sendWindowUpdate();
    expect(a.s.recvWindow).toBe(2 * W); // doubled: the half window was read within 4 round trips
    const b = fakeStream({ capacity: W / 2, rtt: 1000 });
    const refusals = windowBudget.counters().refusals;
    b.s.sendWindowUpdate();
    expect(b.s.recvWindow).toBe(W); // budget spent: stays at the initial window, still granted what was read
    expect(b.frames).toEqual([expect.objectContaining({ length: W / 2 })]);
    expect(windowBudget.counters().refusals).toBe(refusals + 1);
    a.close();
    const c = fakeStream({ capacity: W / 2, rtt: 1000 });
    c.s.sendWindowUpdate();
    expect(c.s.recvWindow).toBe(2 * W);
    c.close();
  } finally {
    windowBudget.limit = before;
  }
});

test("WindowBudget refuses what does not fit and never goes below zero", () => {
  const b = new WindowBudget(100);
  expect(b.take(60)).toBe(true);
  expect(b.take(50)).toBe(false);
  b.give(80);
  expect(b.counters()).toMatchObject({ grantedBytes: 0, refusals: 1 });
});

test("data frames carry at most one noise message's worth, however large the send window", () => {
  patchYamuxStreams();
  const { s, frames } = fakeStream();
  s.sendWindowCapacity = 16 * 1024 * 1024;
  const r = s.sendData(new Uint8ArrayList(new Uint8Array(1_000_000)));
  expect(r).toEqual({ sentBytes: 1_000_000, canSendMore: true });
  expect(Math.max(...frames.map((f) => f.length))).toBe(MAX_FRAME_BYTES);
  expect(frames.reduce((n, f) => n + f.length, 0)).toBe(1_000_000);
});

test("a stream whose connection is full sends nothing until the connection drains; streams take turns at the drains", () => {
  patchYamuxStreams();
  const drains: Array<() => void> = [];
  const conn = { writableNeedsDrain: true, addEventListener: (_t: string, fn: () => void) => drains.push(fn) };
  const made = [fakeStream(), fakeStream(), fakeStream()];
  let next = 0;
  const muxer = { streams: [] as unknown[], _newStream: () => made[next++]!.raw };
  const factory = flowControlledYamux(() => ({ protocol: "/yamux/1.0.0", createStreamMuxer: () => muxer }));
  const wrapped = factory({}).createStreamMuxer(conn) as typeof muxer;
  const streams = [wrapped._newStream(), wrapped._newStream(), wrapped._newStream()];
  muxer.streams.push(...streams);
  const first = made[0]!;
  first.s.sendWindowCapacity = W;
  expect(first.s.sendData(new Uint8ArrayList(new Uint8Array(1000)))).toEqual({ sentBytes: 0, canSendMore: false });
  expect(first.frames).toHaveLength(0);
  conn.writableNeedsDrain = false;
  expect(first.s.sendData(new Uint8ArrayList(new Uint8Array(1000)))).toEqual({ sentBytes: 1000, canSendMore: true });
  // each drain moves the stream told first to the back
  for (const d of drains) d();
  expect(muxer.streams).toEqual([streams[1], streams[2], streams[0]]);
});
