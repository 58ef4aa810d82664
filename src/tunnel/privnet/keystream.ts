/**
 * The stream-cipher abstraction both providers implement.
 *
 * Keystream definition (both providers must produce it bit for bit, because
 * the two ends of a connection may have picked different providers):
 * ChaCha20 (RFC 8439 block function) with state words 12..13 a 64-bit
 * little-endian block counter and words 14..15 fixed by the iv. For the
 * first 2^32 blocks (256 GiB) this is exactly RFC 8439 ChaCha20 with the
 * same 16-byte iv; past that the counter carries into word 13 as OpenSSL
 * does, instead of wrapping and reusing keystream.
 */

export type PrivnetCipherProvider = 'openssl' | 'noble';

export interface Keystream {
  /**
   * dst[i] = src[i] XOR next keystream byte, for src.byteLength bytes; the
   * position advances so consecutive calls continue the stream. dst may be
   * src itself (same offset) but must not partially overlap it.
   */
  xor(src: Uint8Array, dst: Uint8Array): void;
  /** Releases native state; xor() throws afterwards. Idempotent. */
  destroy(): void;
}

export interface KeystreamFactory {
  readonly provider: PrivnetCipherProvider;
  /** Human-readable, e.g. "OpenSSL 3.0.13 (libcrypto.so.3)". */
  readonly detail: string;
  /** key: 32 bytes; iv: 16 bytes = state words 12..15, little-endian. Both are copied. */
  create(key: Uint8Array, iv: Uint8Array): Keystream;
}

export const KEY_BYTES = 32;
export const IV_BYTES = 16;

export function checkKeyIv(key: Uint8Array, iv: Uint8Array): void {
  if (key.byteLength !== KEY_BYTES) throw new RangeError(`chacha20 key must be ${KEY_BYTES} bytes, got ${key.byteLength}`);
  if (iv.byteLength !== IV_BYTES) throw new RangeError(`chacha20 iv must be ${IV_BYTES} bytes, got ${iv.byteLength}`);
}

export function checkXorArgs(src: Uint8Array, dst: Uint8Array): void {
  if (dst.byteLength < src.byteLength) throw new RangeError(`xor: dst (${dst.byteLength}) shorter than src (${src.byteLength})`);
  if (dst.buffer === src.buffer && dst.byteOffset !== src.byteOffset) {
    const a = src.byteOffset;
    const b = dst.byteOffset;
    const n = src.byteLength;
    if (a < b + n && b < a + n) throw new RangeError('xor: src and dst partially overlap');
  }
}
