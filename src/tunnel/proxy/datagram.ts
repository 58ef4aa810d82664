/**
 * UDP over a stream (pure): each datagram travels as `[u16 BE length][payload]`,
 * so datagram boundaries survive the byte stream. Empty datagrams are legal.
 */
import { FrameReader, MAX_FRAME_BODY, encodeFrame } from './frame.ts';

export const MAX_DATAGRAM_BYTES = MAX_FRAME_BODY;

export function encodeDatagram(payload: Uint8Array): Uint8Array {
  if (payload.byteLength > MAX_DATAGRAM_BYTES) {
    throw new RangeError(`datagram of ${payload.byteLength} bytes exceeds ${MAX_DATAGRAM_BYTES}`);
  }
  return encodeFrame(payload);
}

export class DatagramDecoder {
  #reader = new FrameReader(MAX_DATAGRAM_BYTES);

  /**
   * Returns every datagram completed by this chunk, in order. Datagrams lying
   * wholly inside the chunk are views of it; copy them if the chunk's buffer
   * may be reused before they are consumed.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let offset = 0;
    while (offset < chunk.byteLength) {
      const step = this.#reader.read(chunk, offset);
      offset = step.offset;
      if (step.frame !== undefined) out.push(step.frame);
    }
    return out;
  }

  /** True when the bytes so far end inside a datagram (truncated stream). */
  get partial(): boolean {
    return this.#reader.partial;
  }
}
