// noise reads its frames with @libp2p/utils' LengthPrefixedDecoder, whose
// loop asks for the next length prefix until the length decoder throws a
// RangeError for want of bytes: one exception (with its stack trace) for
// every chunk received, usually because the chunk ended exactly at a frame
// boundary. Here decode stops when the buffer is empty instead, and returns
// its frames as an array rather than through a generator (both are iterable
// to the callers). Everything else (limits, errors) behaves as before.
import { InvalidParametersError } from "@libp2p/interface";
import { InvalidMessageLengthError, LengthPrefixedDecoder } from "@libp2p/utils";
import type { Uint8ArrayList } from "uint8arraylist";

const PATCHED = Symbol.for("edgemesh.lengthPrefixedDecoder.noThrow");

interface DecoderState {
  buffer: Uint8ArrayList;
  maxBufferSize: number;
  maxDataLength: number;
  lengthDecoder: (buf: Uint8ArrayList) => number;
  encodingLength: (n: number) => number;
}

function decode(this: DecoderState, buf: Uint8Array | Uint8ArrayList): Uint8ArrayList[] {
  this.buffer.append(buf);
  if (this.buffer.byteLength > this.maxBufferSize) {
    throw new InvalidParametersError(`Buffer length limit exceeded - ${this.buffer.byteLength}/${this.maxBufferSize}`);
  }
  const out: Uint8ArrayList[] = [];
  while (this.buffer.byteLength > 0) {
    let length: number;
    try {
      length = this.lengthDecoder(this.buffer);
    } catch (err) {
      if (err instanceof RangeError) break; // a partial length prefix: wait for more
      throw err;
    }
    if (length < 0 || length > this.maxDataLength) throw new InvalidMessageLengthError("Invalid message length");
    const prefix = this.encodingLength(length);
    const end = prefix + length;
    if (this.buffer.byteLength < end) break;
    const frame = this.buffer.sublist(prefix, end);
    this.buffer.consume(end);
    if (frame.byteLength > 0) out.push(frame);
  }
  return out;
}

/** false when the decoder class no longer looks as expected (stock behaviour stays) */
export function decodeWithoutThrowing(): boolean {
  const proto = LengthPrefixedDecoder.prototype as unknown as Record<PropertyKey, unknown>;
  if (proto[PATCHED]) return true;
  if (typeof proto.decode !== "function") return false;
  proto.decode = decode;
  proto[PATCHED] = true;
  return true;
}
