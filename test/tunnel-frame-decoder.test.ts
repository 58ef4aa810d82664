// noise's frame decoder, patched not to throw at every chunk boundary: the
// same frames come out however the bytes are chunked, a partial prefix or
// frame waits for more, limits still apply, and the length decoder is never
// asked to read an empty buffer (where it would throw).
import { expect, test } from "bun:test";
import { LengthPrefixedDecoder } from "@libp2p/utils";
import { decodeWithoutThrowing } from "../src/tunnel/frame-decoder.ts";
import { seededRandom } from "./util/xorshift.ts";

let emptyReads = 0;
const uint16 = (b: { byteLength: number; subarray(start?: number, end?: number): Uint8Array }): number => {
  if (b.byteLength === 0) emptyReads++;
  if (b.byteLength < 2) throw new RangeError("Could not decode int16BE");
  return (b.subarray(0, 1)[0]! << 8) | b.subarray(1, 2)[0]!;
};
const decoder = () => new LengthPrefixedDecoder({ lengthDecoder: uint16, encodingLength: () => 2, maxBufferSize: 1 << 20 });
const frame = (payload: number[]) => [payload.length >> 8, payload.length & 0xff, ...payload];
const run = (d: LengthPrefixedDecoder, chunk: number[]) => [...d.decode(Uint8Array.from(chunk))].map((f) => [...f.subarray()]);

test("frames in one chunk, across chunks and one byte at a time come out the same; an exact boundary throws nothing", () => {
  expect(decodeWithoutThrowing()).toBe(true);
  expect(decodeWithoutThrowing()).toBe(true); // once only
  const frames = [[1, 2, 3], [4], Array.from({ length: 300 }, (_, i) => i & 0xff)];
  const wire = frames.flatMap(frame);
  emptyReads = 0;
  expect(run(decoder(), wire)).toEqual(frames);
  expect(emptyReads).toBe(0);

  const rnd = seededRandom(7);
  for (let trial = 0; trial < 50; trial++) {
    const d = decoder();
    const got: number[][] = [];
    for (let i = 0; i < wire.length; ) {
      const n = 1 + rnd(8);
      got.push(...run(d, wire.slice(i, i + n)));
      i += n;
    }
    expect(got).toEqual(frames);
  }
  expect(emptyReads).toBe(0);
});

test("a partial length prefix or frame waits for the rest", () => {
  const d = decoder();
  expect(run(d, [0])).toEqual([]);
  expect(run(d, [3, 9])).toEqual([]);
  expect(run(d, [8, 7, 0])).toEqual([[9, 8, 7]]);
  expect(run(d, [1, 5])).toEqual([[5]]);
});

test("limits still apply: an oversized buffer or frame length is an error", () => {
  const small = new LengthPrefixedDecoder({ lengthDecoder: uint16, encodingLength: () => 2, maxBufferSize: 4 });
  expect(() => run(small, [0, 9, 1, 2, 3])).toThrow(/Buffer length limit/);
  const short = new LengthPrefixedDecoder({ lengthDecoder: uint16, encodingLength: () => 2, maxDataLength: 2 });
  expect(() => run(short, [0, 3, 1, 2, 3])).toThrow(/Invalid message length/);
});
