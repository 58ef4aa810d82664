// Window updates are batched: an established stream that has consumed less
// than half its receive window sends none; past half, one carrying all that
// was consumed. A new stream's SYN and ACK ride on its first data frames.
import { expect, test } from "bun:test";
import { StreamState, YamuxStream } from "@chainsafe/libp2p-yamux/stream";
import { Uint8ArrayList } from "uint8arraylist";
import { patchYamuxStreams } from "../src/tunnel/yamux-window.ts";

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
  expect(patchYamuxStreams()).toBe(true);
  expect(patchYamuxStreams()).toBe(true); // once only
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

const SYN = 1;
const ACK = 2;
const DATA = 0;

function sendFirstData(s: unknown, bytes = 10): void {
  const st = s as { sendWindowCapacity: number; sendData(b: Uint8ArrayList): unknown };
  st.sendWindowCapacity = 256 * 1024;
  st.sendData(new Uint8ArrayList(new Uint8Array(bytes)));
}

test("a new stream sends no frame of its own to open: its SYN rides on its first data frame", () => {
  const { s, frames } = fakeStream(StreamState.Init, 256 * 1024, 256 * 1024);
  s.sendWindowUpdate(); // what yamux does right after createStream
  expect(frames).toHaveLength(0);
  sendFirstData(s);
  expect(frames).toEqual([expect.objectContaining({ type: DATA, flag: SYN, length: 10 })]);
});

test("the receiver's ACK rides on its first data frame, not on a window update of its own", () => {
  const { s, frames } = fakeStream(StreamState.SYNReceived, 256 * 1024, 256 * 1024 - 144);
  s.sendWindowUpdate(); // what yamux does after delivering the opener's first data frame
  expect(frames).toHaveLength(0);
  sendFirstData(s);
  expect(frames).toEqual([expect.objectContaining({ type: DATA, flag: ACK })]);
});

test("a receiver that has used half its window before answering still grants more (with its ACK)", () => {
  const { s, frames } = fakeStream(StreamState.SYNReceived, 256 * 1024, 128 * 1024);
  s.sendWindowUpdate();
  expect(frames).toEqual([expect.objectContaining({ flag: ACK, length: 128 * 1024 })]);
});
