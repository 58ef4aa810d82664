/**
 * Fallback ChaCha20 keystream on @noble/ciphers (pure JS, present as a
 * dependency of @chainsafe/libp2p-noise and resolvable from the project root).
 *
 * noble's chacha20() is stateless (key, 12-byte nonce, 32-bit counter), so
 * this class carries the stream position itself: a 64-bit block counter plus
 * the unused tail of the last keystream block. noble refuses low counter
 * word 0xffffffff, so that one block per 2^32 comes from the reference
 * implementation to match OpenSSL's carry into word 13.
 */
import { chacha20 } from '@noble/ciphers/chacha.js';
import { chachaBlock, ivAt } from './chacha-ref.ts';
import { checkKeyIv, checkXorArgs } from './keystream.ts';
import type { Keystream, KeystreamFactory } from './keystream.ts';

const BLOCK = 64;
const LOW_MAX = 0xffffffff;
// noble's word-at-a-time path needs 4-byte aligned views; unaligned chunks
// are staged through this scratch (a copy costs far less than the cipher).
const SCRATCH_BYTES = 64 * 1024;

class NobleKeystream implements Keystream {
  readonly #key: Uint8Array;
  readonly #tail8: Uint8Array; // iv words 14..15
  readonly #nonce = new Uint8Array(12); // noble's nonce = words 13..15
  #low: number; // word 12
  #high: number; // word 13
  readonly #ks = new Uint8Array(BLOCK); // keystream of a partly used block
  #ksPos = BLOCK; // next unused byte of #ks (BLOCK = none left)
  #scratch: Uint8Array | undefined;
  #destroyed = false;

  constructor(key: Uint8Array, iv: Uint8Array) {
    checkKeyIv(key, iv);
    this.#key = Uint8Array.from(key);
    this.#tail8 = iv.slice(8, 16);
    const v = new DataView(iv.buffer, iv.byteOffset, 16);
    this.#low = v.getUint32(0, true);
    this.#high = v.getUint32(4, true);
    this.#setNonce();
  }

  #setNonce(): void {
    new DataView(this.#nonce.buffer).setUint32(0, this.#high, true);
    this.#nonce.set(this.#tail8, 4);
  }

  #advance(blocks: number): void {
    const next = this.#low + blocks;
    if (next > LOW_MAX) {
      this.#low = next - 2 ** 32;
      this.#high = (this.#high + 1) >>> 0;
      this.#setNonce();
    } else {
      this.#low = next;
    }
  }

  /** XOR whole blocks (len % 64 === 0) that do not reach low word 0xffffffff. */
  #bulk(src: Uint8Array, dst: Uint8Array): void {
    if ((src.byteOffset & 3) === 0 && (dst.byteOffset & 3) === 0) {
      chacha20(this.#key, this.#nonce, src, dst, this.#low);
      return;
    }
    const scratch = (this.#scratch ??= new Uint8Array(SCRATCH_BYTES));
    let low = this.#low;
    for (let off = 0; off < src.byteLength; off += SCRATCH_BYTES) {
      const n = Math.min(SCRATCH_BYTES, src.byteLength - off);
      const buf = n === SCRATCH_BYTES ? scratch : scratch.subarray(0, n);
      buf.set(src.subarray(off, off + n));
      chacha20(this.#key, this.#nonce, buf, buf, low);
      dst.set(buf, off);
      low += n / BLOCK;
    }
  }

  #nextBlock(): Uint8Array {
    const ks =
      this.#low === LOW_MAX
        ? chachaBlock(this.#key, ivAt(this.#low + this.#high * 2 ** 32, this.#tail8))
        : chacha20(this.#key, this.#nonce, new Uint8Array(BLOCK), undefined, this.#low);
    this.#advance(1);
    return ks;
  }

  xor(src: Uint8Array, dst: Uint8Array): void {
    if (this.#destroyed) throw new Error('noble chacha20: keystream destroyed');
    checkXorArgs(src, dst);
    const n = src.byteLength;
    let i = 0;
    // 1. Rest of the previous call's last block.
    while (this.#ksPos < BLOCK && i < n) {
      dst[i] = src[i]! ^ this.#ks[this.#ksPos++]!;
      i++;
    }
    // 2. Whole blocks, in runs that stop short of low word 0xffffffff.
    while (n - i >= BLOCK) {
      if (this.#low === LOW_MAX) {
        const ks = this.#nextBlock();
        for (let j = 0; j < BLOCK; j++) dst[i + j] = src[i + j]! ^ ks[j]!;
        i += BLOCK;
        continue;
      }
      const blocks = Math.min(Math.floor((n - i) / BLOCK), LOW_MAX - this.#low);
      const len = blocks * BLOCK;
      this.#bulk(src.subarray(i, i + len), dst.subarray(i, i + len));
      this.#advance(blocks);
      i += len;
    }
    // 3. A partial block: keep the unused keystream for the next call.
    if (i < n) {
      this.#ks.set(this.#nextBlock());
      this.#ksPos = 0;
      while (i < n) {
        dst[i] = src[i]! ^ this.#ks[this.#ksPos++]!;
        i++;
      }
    }
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#key.fill(0);
    this.#ks.fill(0);
  }
}

export const nobleKeystreamFactory: KeystreamFactory = {
  provider: 'noble',
  detail: '@noble/ciphers chacha20 (pure JS)',
  create: (key, iv) => new NobleKeystream(key, iv),
};
