/**
 * Plain ChaCha20 block function (RFC 8439 §2.3), written for clarity, not
 * speed. Two uses:
 *  - the fallback provider needs the one block per 2^32 whose low counter
 *    word is 0xffffffff, which @noble/ciphers refuses to produce;
 *  - self-tests compare the fast providers against it.
 */

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]; // "expand 32-byte k"

function rotl(v: number, n: number): number {
  return (v << n) | (v >>> (32 - n));
}

function quarterRound(s: Uint32Array, a: number, b: number, c: number, d: number): void {
  // Indices are always 0..15, so the `!` reads cannot be undefined.
  s[a] = (s[a]! + s[b]!) >>> 0;
  s[d] = rotl(s[d]! ^ s[a]!, 16);
  s[c] = (s[c]! + s[d]!) >>> 0;
  s[b] = rotl(s[b]! ^ s[c]!, 12);
  s[a] = (s[a]! + s[b]!) >>> 0;
  s[d] = rotl(s[d]! ^ s[a]!, 8);
  s[c] = (s[c]! + s[d]!) >>> 0;
  s[b] = rotl(s[b]! ^ s[c]!, 7);
}

/**
 * One 64-byte keystream block. `iv` is state words 12..15 as 16 little-endian
 * bytes (counter || 12-byte nonce, the layout OpenSSL's EVP_chacha20 takes).
 */
export function chachaBlock(key: Uint8Array, iv: Uint8Array): Uint8Array {
  if (key.byteLength !== 32 || iv.byteLength !== 16) throw new RangeError('chachaBlock: key must be 32 bytes and iv 16');
  const kv = new DataView(key.buffer, key.byteOffset, 32);
  const iv32 = new DataView(iv.buffer, iv.byteOffset, 16);
  const init = new Uint32Array(16);
  init.set(SIGMA, 0);
  for (let i = 0; i < 8; i++) init[4 + i] = kv.getUint32(i * 4, true);
  for (let i = 0; i < 4; i++) init[12 + i] = iv32.getUint32(i * 4, true);
  const s = Uint32Array.from(init);
  for (let i = 0; i < 10; i++) {
    quarterRound(s, 0, 4, 8, 12);
    quarterRound(s, 1, 5, 9, 13);
    quarterRound(s, 2, 6, 10, 14);
    quarterRound(s, 3, 7, 11, 15);
    quarterRound(s, 0, 5, 10, 15);
    quarterRound(s, 1, 6, 11, 12);
    quarterRound(s, 2, 7, 8, 13);
    quarterRound(s, 3, 4, 9, 14);
  }
  const out = new Uint8Array(64);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 16; i++) ov.setUint32(i * 4, (s[i]! + init[i]!) >>> 0, true);
  return out;
}

/**
 * The 16-byte iv for 64-bit block counter `block` with nonce words 14..15
 * taken from `tail8` (8 bytes). Words 12..13 hold the counter, which is how
 * OpenSSL carries past 2^32 blocks.
 */
export function ivAt(block: number, tail8: Uint8Array): Uint8Array {
  const iv = new Uint8Array(16);
  const v = new DataView(iv.buffer);
  v.setUint32(0, block % 2 ** 32, true);
  v.setUint32(4, Math.floor(block / 2 ** 32), true);
  iv.set(tail8.subarray(0, 8), 8);
  return iv;
}

/** XOR `src` with the keystream starting at `iv` (reference speed; tests only). */
export function chachaXorRef(key: Uint8Array, iv: Uint8Array, src: Uint8Array): Uint8Array {
  const v = new DataView(iv.buffer, iv.byteOffset, 16);
  let block = v.getUint32(0, true) + v.getUint32(4, true) * 2 ** 32;
  const tail = iv.slice(8, 16);
  const out = new Uint8Array(src.byteLength);
  for (let off = 0; off < src.byteLength; off += 64, block++) {
    const ks = chachaBlock(key, ivAt(block, tail));
    const n = Math.min(64, src.byteLength - off);
    for (let j = 0; j < n; j++) out[off + j] = src[off + j]! ^ ks[j]!;
  }
  return out;
}
