/**
 * What each privnet version does to the bytes of a connection, after the
 * nonce exchange: the confirmation each side sends first, how the remote's is
 * checked, and what happens to every later byte.
 *
 * v1 (xorLayer): every byte XORed with a per-direction ChaCha20 keystream;
 *   the confirmation is 16 zero bytes, encrypted.
 * v2 (proofLayer): the confirmation is a 32-byte HMAC proof of the psk bound
 *   to both nonces and the sender's side (kdf.ts); later bytes pass as they
 *   are. Noise inside encrypts and authenticates every byte; the private
 *   network only decides who may reach noise, and the proof decides that
 *   before the first byte goes up, without a second cipher pass over the
 *   data (measured: ~1 agent CPU-second per GiB for both agents).
 */
import { timingSafeEqual } from 'node:crypto';
import type { AbstractMultiaddrConnection } from '@libp2p/utils';
import type { Keystream } from './keystream.ts';

type SendList = Parameters<AbstractMultiaddrConnection['sendData']>[0];

export type ConfirmVerdict = 'ok' | 'more' | 'mismatch' | { otherVersion: 1 | 2 };

export interface PrivnetLayer {
  readonly version: 1 | 2;
  /** sent first, as it goes on the wire */
  readonly confirmation: Uint8Array;
  /** bytes the remote's confirmation takes on the wire */
  readonly confirmBytes: number;
  /**
   * checks the remote's confirmation: all of it received so far (at most
   * confirmBytes, as received; may be changed in place once complete);
   * 'more' = cannot tell yet
   */
  check(received: Uint8Array): ConfirmVerdict;
  /** turns received bytes into plaintext, in place */
  incoming(buf: Uint8Array): void;
  /** turns bytes to send into what goes on the wire (the input belongs to the caller; a list goes as it is) */
  outgoing(data: SendList, byteLength: number): Uint8Array | SendList;
  /** whether sends are cut to the connection's maxMessageSize (v1 encrypts each into a fresh buffer) */
  readonly chunked: boolean;
  destroy(): void;
}

export const V1_CONFIRM_BYTES = 16;

/**
 * v1. `otherProof`, when given, is the v2 proof this remote would send: a
 * mismatching confirmation that equals its first bytes names the version.
 */
export function xorLayer(tx: Keystream, rx: Keystream, otherProof?: Uint8Array): PrivnetLayer {
  const confirmation = new Uint8Array(V1_CONFIRM_BYTES);
  tx.xor(confirmation, confirmation);
  return {
    version: 1,
    chunked: true,
    confirmation,
    confirmBytes: V1_CONFIRM_BYTES,
    check(received) {
      if (received.byteLength < V1_CONFIRM_BYTES) return 'more';
      const raw = Uint8Array.from(received);
      rx.xor(received, received);
      if (received.every((b) => b === 0)) return 'ok';
      if (otherProof && timingSafeEqual(raw, otherProof.subarray(0, V1_CONFIRM_BYTES))) return { otherVersion: 2 };
      return 'mismatch';
    },
    incoming(buf) {
      rx.xor(buf, buf);
    },
    outgoing(data, byteLength) {
      // a fresh buffer: the transport may hold it until the socket drains,
      // and the plaintext belongs to the layer above
      const out = Buffer.allocUnsafe(byteLength);
      let off = 0;
      for (const buf of data) {
        const n = buf.byteLength;
        if (n === 0) continue;
        tx.xor(buf, off === 0 && n === byteLength ? out : out.subarray(off, off + n));
        off += n;
      }
      return out;
    },
    destroy() {
      tx.destroy();
      rx.destroy();
    },
  };
}

/**
 * v2. `v1Confirmation`, when given, tells what this remote would send under
 * v1 (its first 16 bytes), to name the version of a peer that does.
 */
export function proofLayer(proofOut: Uint8Array, proofIn: Uint8Array, v1Confirmation?: () => Uint8Array): PrivnetLayer {
  const expected = Uint8Array.from(proofIn);
  return {
    version: 2,
    chunked: false,
    confirmation: Uint8Array.from(proofOut),
    confirmBytes: expected.byteLength,
    check(received) {
      // a v1 peer sends 16 bytes and then waits for ours, which it refuses
      if (received.byteLength >= V1_CONFIRM_BYTES && v1Confirmation) {
        const v1 = v1Confirmation();
        if (timingSafeEqual(received.subarray(0, V1_CONFIRM_BYTES), v1.subarray(0, V1_CONFIRM_BYTES))) return { otherVersion: 1 };
      }
      if (received.byteLength < expected.byteLength) return 'more';
      return timingSafeEqual(received, expected) ? 'ok' : 'mismatch';
    },
    incoming() {},
    // as they are, no copy: noise hands down whole messages (noise-frames.ts)
    outgoing: (data) => data,
    destroy() {
      expected.fill(0);
    },
  };
}
