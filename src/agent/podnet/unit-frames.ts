// The pod network's framing, on the wire and between the reader thread and
// the main thread: `[u32 BE length][unit]`, a unit being a virtio-net header
// and its IP packet. A GSO packet of 64 KiB and its header do not fit a u16.
export const LEN_BYTES = 4;
/** the largest unit: a 65,535-byte IP packet and its 10-byte header */
export const MAX_UNIT = 65_545;

export class UnitTooLargeError extends Error {}

/** splits a byte stream into units; a unit that spans chunks is joined */
export class UnitDecoder {
  private partial?: Uint8Array;
  private have = 0;
  private header = new Uint8Array(LEN_BYTES);
  private headerHave = 0;

  constructor(private readonly max = MAX_UNIT) {}

  /** the units this chunk completes, in order (views of the chunk when whole inside it) */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let off = 0;
    while (off < chunk.byteLength) {
      if (this.partial) {
        const take = Math.min(this.partial.byteLength - this.have, chunk.byteLength - off);
        this.partial.set(chunk.subarray(off, off + take), this.have);
        this.have += take;
        off += take;
        if (this.have === this.partial.byteLength) {
          out.push(this.partial);
          this.partial = undefined;
        }
        continue;
      }
      if (this.headerHave > 0 || chunk.byteLength - off < LEN_BYTES) {
        const take = Math.min(LEN_BYTES - this.headerHave, chunk.byteLength - off);
        this.header.set(chunk.subarray(off, off + take), this.headerHave);
        this.headerHave += take;
        off += take;
        if (this.headerHave < LEN_BYTES) break;
        this.headerHave = 0;
        this.begin(readLen(this.header, 0));
        continue;
      }
      const len = readLen(chunk, off);
      off += LEN_BYTES;
      if (len > this.max) throw new UnitTooLargeError(`unit of ${len} bytes (at most ${this.max})`);
      if (chunk.byteLength - off >= len) {
        // an empty unit carries nothing: skipped
        if (len > 0) out.push(chunk.subarray(off, off + len));
        off += len;
      } else this.begin(len);
    }
    return out;
  }

  private begin(len: number): void {
    if (len > this.max) throw new UnitTooLargeError(`unit of ${len} bytes (at most ${this.max})`);
    this.partial = new Uint8Array(len);
    this.have = 0;
    if (len === 0) {
      this.partial = undefined;
    }
  }
}

export function readLen(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

export function writeLen(b: Uint8Array, off: number, len: number): void {
  b[off] = len >>> 24;
  b[off + 1] = (len >>> 16) & 255;
  b[off + 2] = (len >>> 8) & 255;
  b[off + 3] = len & 255;
}

/** what one read() of the TUN may return; a unit over MAX_UNIT is dropped and counted as oversized */
export const READ_LEN = MAX_UNIT + 64;

/**
 * Fills buf[off, end) with the TUN's packets, one per `read(at, len)` (a
 * read() into buf at `at`), each behind its u32 length, until none is left,
 * `maxReads` were made or no room is left for a whole read. A unit `divert`
 * takes (it went another way) is not kept. Returns the new offset and the
 * reads made. The reader thread fills its slots with it, the main thread its
 * reads right after a write.
 */
export function readUnits(
  read: (at: number, len: number) => number,
  buf: Uint8Array,
  off: number,
  end: number,
  o: { oversized: () => void; maxReads?: number; divert?: (unit: Uint8Array) => boolean },
): { off: number; reads: number } {
  let reads = 0;
  while (end - off >= READ_LEN + LEN_BYTES && reads < (o.maxReads ?? Infinity)) {
    const got = read(off + LEN_BYTES, READ_LEN);
    if (got <= 0) break;
    reads++;
    // larger than a GSO packet can be: not ours to carry
    if (got > MAX_UNIT) {
      o.oversized();
      continue;
    }
    if (o.divert?.(buf.subarray(off + LEN_BYTES, off + LEN_BYTES + got))) continue;
    writeLen(buf, off, got);
    off += LEN_BYTES + got;
  }
  return { off, reads };
}
