/**
 * Byte helpers shared by the proxy codecs and the socket glue. libp2p hands
 * out either a Uint8Array or a Uint8ArrayList; both expose `subarray()` with
 * no arguments returning one contiguous Uint8Array (a copy only when the list
 * has several parts), which is all the codecs need.
 */
export type Chunk = Uint8Array | { readonly byteLength: number; subarray(): Uint8Array };

export const EMPTY = new Uint8Array(0);

export function flatten(chunk: Chunk): Uint8Array {
  return chunk instanceof Uint8Array ? chunk : chunk.subarray();
}

export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return b;
  if (b.byteLength === 0) return a;
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/** Copy so the result does not pin (or alias) a larger buffer owned by someone else. */
export function copy(bytes: Uint8Array): Uint8Array {
  return bytes.byteLength === 0 ? EMPTY : bytes.slice();
}
