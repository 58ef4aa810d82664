import { describe, expect, test } from 'bun:test';
import { DatagramDecoder, MAX_DATAGRAM_BYTES, encodeDatagram } from '../../src/tunnel/proxy/datagram.ts';

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const wire = (ds: Uint8Array[]): Uint8Array => {
  const parts = ds.map(encodeDatagram);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
};
const asArrays = (ds: Uint8Array[]): number[][] => ds.map((d) => Array.from(d));

describe('datagram framing', () => {
  const datagrams = [bytes(5, 1), new Uint8Array(0), bytes(300, 2), bytes(1, 3), new Uint8Array(0)];

  test('round trip keeps boundaries, including empty datagrams', () => {
    expect(asArrays(new DatagramDecoder().push(wire(datagrams)))).toEqual(asArrays(datagrams));
  });

  test('a 65535-byte datagram round trips; 65536 is refused', () => {
    const big = bytes(MAX_DATAGRAM_BYTES, 7);
    const [got] = new DatagramDecoder().push(encodeDatagram(big));
    expect(got?.byteLength).toBe(MAX_DATAGRAM_BYTES);
    expect(Buffer.from(got!).equals(Buffer.from(big))).toBe(true);
    expect(() => encodeDatagram(new Uint8Array(MAX_DATAGRAM_BYTES + 1))).toThrow(RangeError);
  });

  test('decodes across every split point', () => {
    const all = wire(datagrams);
    for (let i = 0; i <= all.byteLength; i++) {
      const d = new DatagramDecoder();
      const got = [...d.push(all.subarray(0, i)), ...d.push(all.subarray(i))];
      expect(asArrays(got)).toEqual(asArrays(datagrams));
      expect(d.partial).toBe(false);
    }
  });

  test('decodes one byte at a time and with three-way splits', () => {
    const all = wire(datagrams);
    const d = new DatagramDecoder();
    const got: Uint8Array[] = [];
    // Copy what we receive: views may alias the chunk we passed in.
    for (let i = 0; i < all.byteLength; i++) for (const x of d.push(all.slice(i, i + 1))) got.push(x.slice());
    expect(asArrays(got)).toEqual(asArrays(datagrams));
    for (let i = 0; i < all.byteLength; i += 7) {
      for (let j = i; j <= all.byteLength; j += 13) {
        const d3 = new DatagramDecoder();
        const g = [...d3.push(all.subarray(0, i)), ...d3.push(all.subarray(i, j)), ...d3.push(all.subarray(j))];
        expect(asArrays(g)).toEqual(asArrays(datagrams));
      }
    }
  });

  test('reports a truncated trailing datagram', () => {
    const d = new DatagramDecoder();
    d.push(encodeDatagram(bytes(10, 1)).subarray(0, 5));
    expect(d.partial).toBe(true);
  });
});
