/**
 * Compliance suite every ICryptoInterface provider must pass. Registered once
 * per provider by aead.test.ts; `reference` is noise's pure-JS (noble)
 * implementation, which the provider must agree with byte for byte.
 */
import { describe, expect, test } from 'bun:test';
import { Uint8ArrayList } from 'uint8arraylist';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';

export const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/[\s:]+/g, ''), 'hex'));
export const toHex = (b: Uint8Array | Uint8ArrayList): string =>
  Buffer.from(b instanceof Uint8Array ? b : b.subarray()).toString('hex');
export const rand = (n: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(i + 65536, n)));
  return out;
};
const flat = (b: Uint8Array | Uint8ArrayList): Uint8Array => (b instanceof Uint8Array ? b : b.subarray());

// RFC 8439 §2.8.2
export const RFC8439 = {
  key: hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f'),
  nonce: hex('070000004041424344454647'),
  ad: hex('50515253c0c1c2c3c4c5c6c7'),
  plaintext: new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  ),
  ciphertext: hex(`
    d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
    3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
    92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
    3ff4def08e4b7a9de576d26586cec64b6116`),
  tag: hex('1ae10b594f09e26a7e902ecbd0600691'),
};

/** Sizes around noise's 1200-byte node:crypto switch and its 65519-byte frame limit. */
export const SIZES = [0, 1, 15, 16, 17, 63, 64, 65, 255, 1199, 1200, 1201, 4096, 16384, 65519, 65535];

export function aeadComplianceSuite(
  name: string,
  getCrypto: () => ICryptoInterface,
  reference: ICryptoInterface,
): void {
  describe(`AEAD compliance: ${name}`, () => {
    const enc = (...a: Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>) =>
      flat(getCrypto().chaCha20Poly1305Encrypt(...a));
    const dec = (...a: Parameters<ICryptoInterface['chaCha20Poly1305Decrypt']>) =>
      flat(getCrypto().chaCha20Poly1305Decrypt(...a));
    const expectThrows = (f: () => unknown): void => {
      expect(f).toThrow();
    };

    test('RFC 8439 §2.8.2 test vector encrypts', () => {
      const out = enc(RFC8439.plaintext, RFC8439.nonce, RFC8439.ad, RFC8439.key);
      expect(toHex(out)).toBe(toHex(RFC8439.ciphertext) + toHex(RFC8439.tag));
    });

    test('RFC 8439 §2.8.2 test vector decrypts', () => {
      const ct = new Uint8Array([...RFC8439.ciphertext, ...RFC8439.tag]);
      expect(toHex(dec(ct, RFC8439.nonce, RFC8439.ad, RFC8439.key))).toBe(toHex(RFC8439.plaintext));
    });

    test('matches the pure-JS reference over many sizes, with and without AD', () => {
      const sizes = [...SIZES];
      for (let i = 0; i < 24; i++) sizes.push(Math.floor(Math.random() * 70_000));
      for (const size of sizes) {
        // noise only ever passes an empty AD or the 32-byte handshake hash, and
        // as-chacha20poly1305 (the wasm provider) rejects AD > 32 bytes.
        for (const adLen of [0, 32, 1 + Math.floor(Math.random() * 32)]) {
          const key = rand(32);
          const nonce = rand(12);
          const ad = rand(adLen);
          const pt = rand(size);
          const ct = enc(pt, nonce, ad, key);
          const refCt = flat(reference.chaCha20Poly1305Encrypt(pt, nonce, ad, key));
          expect(ct.byteLength).toBe(size + 16);
          if (toHex(ct) !== toHex(refCt)) throw new Error(`ciphertext mismatch at size=${size} ad=${adLen}`);
          // cross-decrypt both ways
          expect(toHex(dec(refCt, nonce, ad, key))).toBe(toHex(pt));
          expect(toHex(flat(reference.chaCha20Poly1305Decrypt(ct, nonce, ad, key)))).toBe(toHex(pt));
        }
      }
    });

    test('accepts Uint8ArrayList input (as noise passes sublists)', () => {
      const key = rand(32);
      const nonce = rand(12);
      const ad = rand(32);
      const parts = [rand(12), rand(0), rand(3000), rand(1), rand(70)];
      const list = new Uint8ArrayList(...parts);
      const ct = enc(list, nonce, ad, key);
      expect(toHex(ct)).toBe(toHex(flat(reference.chaCha20Poly1305Encrypt(list.subarray(), nonce, ad, key))));
      // ciphertext split so the tag straddles two buffers
      const ctList = new Uint8ArrayList(ct.subarray(0, 100), ct.subarray(100, ct.byteLength - 7), ct.subarray(ct.byteLength - 7));
      expect(toHex(dec(ctList, nonce, ad, key))).toBe(toHex(list.subarray()));
    });

    test('decrypts in place into dst aliasing the ciphertext (noise transport path)', () => {
      const key = rand(32);
      const nonce = rand(12);
      const pt = rand(5000);
      const ct = Uint8Array.from(enc(pt, nonce, new Uint8Array(0), key));
      // noise: dst = chunk.subarray(i, end - 16), encrypted = chunk.subarray(i, end)
      const frame = new Uint8Array(ct.byteLength + 50);
      frame.set(ct, 25);
      const encrypted = frame.subarray(25, 25 + ct.byteLength);
      const dst = frame.subarray(25, 25 + ct.byteLength - 16);
      const out = dec(encrypted, nonce, new Uint8Array(0), key, dst);
      expect(toHex(out)).toBe(toHex(pt));
    });

    test('tampered ciphertext is rejected', () => {
      const key = rand(32);
      const nonce = rand(12);
      const ad = rand(16);
      for (const size of [1, 1200, 65519]) {
        const ct = Uint8Array.from(enc(rand(size), nonce, ad, key));
        const bad = Uint8Array.from(ct);
        const pos = Math.floor(Math.random() * size);
        bad[pos] = (bad[pos] ?? 0) ^ 0x01;
        expectThrows(() => dec(bad, nonce, ad, key));
      }
    });

    test('tampered tag is rejected', () => {
      const key = rand(32);
      const nonce = rand(12);
      for (const size of [0, 1200]) {
        const ct = Uint8Array.from(enc(rand(size), nonce, new Uint8Array(0), key));
        for (const pos of [ct.byteLength - 16, ct.byteLength - 1]) {
          const bad = Uint8Array.from(ct);
          bad[pos] = (bad[pos] ?? 0) ^ 0x80;
          expectThrows(() => dec(bad, nonce, new Uint8Array(0), key));
        }
      }
    });

    test('tampered, missing or extra AD is rejected', () => {
      const key = rand(32);
      const nonce = rand(12);
      const ad = rand(32);
      const ct = enc(rand(2000), nonce, ad, key);
      const badAd = Uint8Array.from(ad);
      badAd[31] = (badAd[31] ?? 0) ^ 0x01;
      expectThrows(() => dec(ct, nonce, badAd, key));
      expectThrows(() => dec(ct, nonce, new Uint8Array(0), key));
      const ct2 = enc(rand(2000), nonce, new Uint8Array(0), key);
      expectThrows(() => dec(ct2, nonce, ad, key));
    });

    test('wrong key or nonce is rejected', () => {
      const key = rand(32);
      const nonce = rand(12);
      const ct = enc(rand(3000), nonce, new Uint8Array(0), key);
      expectThrows(() => dec(ct, nonce, new Uint8Array(0), rand(32)));
      const otherNonce = Uint8Array.from(nonce);
      otherNonce[4] = (otherNonce[4] ?? 0) ^ 1;
      expectThrows(() => dec(ct, otherNonce, new Uint8Array(0), key));
    });

    test('truncated ciphertext (shorter than a tag) is rejected', () => {
      expectThrows(() => dec(rand(15), rand(12), new Uint8Array(0), rand(32)));
    });

    test('works after a failed decryption (context state is reset)', () => {
      const key = rand(32);
      const nonce = rand(12);
      const pt = rand(1500);
      const ct = Uint8Array.from(enc(pt, nonce, new Uint8Array(0), key));
      const bad = Uint8Array.from(ct);
      bad[0] = (bad[0] ?? 0) ^ 1;
      expectThrows(() => dec(bad, nonce, new Uint8Array(0), key));
      expect(toHex(dec(ct, nonce, new Uint8Array(0), key))).toBe(toHex(pt));
    });

    test('non-AEAD primitives match the reference', () => {
      const c = getCrypto();
      const data = rand(3000);
      expect(toHex(c.hashSHA256(data))).toBe(toHex(reference.hashSHA256(data)));
      const list = new Uint8ArrayList(data.subarray(0, 10), data.subarray(10));
      expect(toHex(c.hashSHA256(list))).toBe(toHex(reference.hashSHA256(data)));
      const ck = rand(32);
      const ikm = rand(32);
      expect(c.getHKDF(ck, ikm).map(toHex)).toEqual(reference.getHKDF(ck, ikm).map(toHex));
      const a = c.generateX25519KeyPair();
      const b = reference.generateX25519KeyPair();
      expect(a.publicKey.byteLength).toBe(32);
      expect(toHex(a.publicKey)).toBe(toHex(reference.generateX25519KeyPairFromSeed(a.privateKey).publicKey));
      const seed = rand(32);
      expect(toHex(c.generateX25519KeyPairFromSeed(seed).publicKey)).toBe(
        toHex(reference.generateX25519KeyPairFromSeed(seed).publicKey),
      );
      expect(toHex(c.generateX25519SharedKey(a.privateKey, b.publicKey))).toBe(
        toHex(reference.generateX25519SharedKey(b.privateKey, a.publicKey)),
      );
    });
  });
}
