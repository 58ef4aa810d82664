// Window updates are batched: an established stream that has consumed less
// than half its receive window sends none; past half, one carrying all that
// was consumed. Opening streams keep the stock path (SYN/ACK flags).
import { expect, test } from "bun:test";
import { StreamState, YamuxStream } from "@chainsafe/libp2p-yamux/stream";
import { batchWindowUpdates } from "../src/tunnel/yamux-window.ts";

function fakeStream(state: StreamState, recvWindow: number, capacity: number) {
  const frames: Array<{ type: number; flag: number; length: number }> = [];
  const s = Object.create(YamuxStream.prototype) as Record<string, unknown>;
  Object.assign(s, {
    state,
    recvWindow,
    recvWindowCapacity: capacity,
    maxStreamWindowSize: 16 * 1024 * 1024,
    epochStart: Date.now(),
    streamId: 1,
    getRTT: () => -1,
    sendFrame: (f: { type: number; flag: number; length: number }) => frames.push(f),
  });
  return { s: s as unknown as { sendWindowUpdate(): void; recvWindowCapacity: number }, frames };
}

test("an established stream answers consumed data with one window update per half window, not one per frame", () => {
  expect(batchWindowUpdates()).toBe(true);
  expect(batchWindowUpdates()).toBe(true); // once only
  const W = 256 * 1024;
  const { s, frames } = fakeStream(StreamState.Established, W, W);
  // 64-byte frames: the stock stream would send an update after each one
  for (let i = 0; i < 2047; i++) {
    s.recvWindowCapacity -= 64;
    s.sendWindowUpdate();
  }
  expect(frames).toHaveLength(0);
  s.recvWindowCapacity -= 64; // now exactly half consumed
  s.sendWindowUpdate();
  expect(frames).toHaveLength(1);
  expect(frames[0]!.length).toBe(W / 2);
  expect(s.recvWindowCapacity).toBe(W);
});

test("a stream still opening sends its update (it carries the ACK) whatever was consumed", () => {
  const { s, frames } = fakeStream(StreamState.SYNReceived, 256 * 1024, 256 * 1024 - 64);
  s.sendWindowUpdate();
  expect(frames).toHaveLength(1);
  expect(frames[0]!.flag).not.toBe(0);
});
