/**
 * Incremental reader for `[u16 big-endian length][body]` frames, the one
 * framing the proxy protocol uses (headers and UDP datagrams). It works across
 * arbitrary chunk boundaries and rejects an oversized declared length as soon
 * as the two length bytes are in, so a hostile peer cannot make us buffer.
 */
export const LENGTH_BYTES = 2;
export const MAX_FRAME_BODY = 0xffff;

export class FrameTooLargeError extends Error {
  override name = 'FrameTooLargeError';
  constructor(
    readonly declared: number,
    readonly limit: number,
  ) {
    super(`declared length ${declared} bytes exceeds the limit of ${limit} bytes`);
  }
}

export function encodeFrame(body: Uint8Array): Uint8Array {
  if (body.byteLength > MAX_FRAME_BODY) throw new RangeError(`frame body of ${body.byteLength} bytes exceeds ${MAX_FRAME_BODY}`);
  const out = new Uint8Array(LENGTH_BYTES + body.byteLength);
  out[0] = body.byteLength >>> 8;
  out[1] = body.byteLength & 0xff;
  out.set(body, LENGTH_BYTES);
  return out;
}

export interface ReadStep {
  /** A complete frame body, or undefined when the chunk ran out first. */
  frame: Uint8Array | undefined;
  /** Where in the chunk reading stopped; pass it back to continue. */
  offset: number;
}

export class FrameReader {
  #prefix = new Uint8Array(LENGTH_BYTES);
  #prefixFill = 0;
  #body: Uint8Array | undefined;
  #bodyFill = 0;
  #failed: FrameTooLargeError | undefined;

  constructor(private readonly maxBody: number = MAX_FRAME_BODY) {
    if (!Number.isInteger(maxBody) || maxBody < 0 || maxBody > MAX_FRAME_BODY) throw new RangeError(`bad frame limit ${maxBody}`);
  }

  /** True while a frame is partially read (useful to detect truncation at EOF). */
  get partial(): boolean {
    return this.#prefixFill > 0;
  }

  /**
   * Reads at most one frame from `chunk[offset..]`. A frame that lies wholly
   * inside the chunk is returned as a view of it (no copy); one spread over
   * several chunks is assembled in a buffer of exactly its declared size.
   */
  read(chunk: Uint8Array, offset = 0): ReadStep {
    if (this.#failed) throw this.#failed;
    let pos = offset;
    if (this.#prefixFill < LENGTH_BYTES) {
      if (this.#prefixFill === 0 && chunk.byteLength - pos >= LENGTH_BYTES) {
        const len = (chunk[pos]! << 8) | chunk[pos + 1]!;
        this.#check(len);
        if (chunk.byteLength - pos - LENGTH_BYTES >= len) {
          const start = pos + LENGTH_BYTES;
          return { frame: chunk.subarray(start, start + len), offset: start + len };
        }
      }
      while (this.#prefixFill < LENGTH_BYTES && pos < chunk.byteLength) this.#prefix[this.#prefixFill++] = chunk[pos++]!;
      if (this.#prefixFill < LENGTH_BYTES) return { frame: undefined, offset: pos };
      const len = (this.#prefix[0]! << 8) | this.#prefix[1]!;
      this.#check(len);
      this.#body = new Uint8Array(len);
      this.#bodyFill = 0;
    }
    const body = this.#body!;
    const take = Math.min(body.byteLength - this.#bodyFill, chunk.byteLength - pos);
    body.set(chunk.subarray(pos, pos + take), this.#bodyFill);
    this.#bodyFill += take;
    pos += take;
    if (this.#bodyFill < body.byteLength) return { frame: undefined, offset: pos };
    this.#prefixFill = 0;
    this.#body = undefined;
    return { frame: body, offset: pos };
  }

  #check(len: number): void {
    // A stream that sent this cannot be resynchronised: stay failed.
    if (len > this.maxBody) throw (this.#failed = new FrameTooLargeError(len, this.maxBody));
  }
}
