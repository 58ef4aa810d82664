/**
 * multistream-select acknowledgements held back until the proxy reply, so
 * both go in one frame. Only for openers that sent their request behind the
 * protocol line without waiting (optimistic-select.ts): they read the acks in
 * front of the reply anyway. An opener that waits for the acks gets them at
 * once (see direct-accept.ts).
 */
import type { Stream } from '@libp2p/interface';
import { concat } from './bytes.ts';

const held = new WeakMap<Stream, Uint8Array>();

export function holdAcks(stream: Stream, acks: Uint8Array): void {
  held.set(stream, acks);
}

/** `payload` with the stream's held acknowledgements in front, if any (taken once) */
export function withHeldAcks(stream: Stream, payload: Uint8Array): Uint8Array {
  const acks = held.get(stream);
  if (!acks) return payload;
  held.delete(stream);
  return concat(acks, payload);
}
