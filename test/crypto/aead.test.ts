import { describe, expect, test } from 'bun:test';
import { pureJsCrypto } from '@chainsafe/libp2p-noise';
import { createNoiseCrypto, getCryptoProvider, loadOpenSslChaCha, tryLoadOpenSslChaCha } from '../../src/tunnel/crypto/index.ts';
import { aeadComplianceSuite, rand, toHex } from './aead-suite.ts';

// Providers are built explicitly with an empty env so EDGEMESH_* in the
// caller's environment cannot change what is under test.
const hasOpenssl = tryLoadOpenSslChaCha().ok;
const wasm = createNoiseCrypto(undefined, { provider: 'wasm', env: {} });

if (hasOpenssl) registerOpensslTests();
else test.skip('openssl provider (libcrypto not loadable on this host)', () => {});

aeadComplianceSuite('wasm', () => wasm.crypto, pureJsCrypto);

function registerOpensslTests(): void {
  const openssl = createNoiseCrypto(undefined, { provider: 'openssl', env: {} });

  test('providers report what they are', () => {
    expect(openssl.provider).toBe('openssl');
    expect(wasm.provider).toBe('wasm');
    expect(getCryptoProvider(openssl.crypto)).toBe('openssl');
    expect(getCryptoProvider(wasm.crypto)).toBe('wasm');
    expect(getCryptoProvider(pureJsCrypto)).toBeUndefined();
  });

  aeadComplianceSuite('openssl', () => openssl.crypto, pureJsCrypto);

  test('openssl and wasm produce identical ciphertexts (sizes 0..65535, random, with/without AD)', () => {
    const sizes = [0, 1, 1199, 1200, 65535];
    for (let i = 0; i < 40; i++) sizes.push(Math.floor(Math.random() * 65536));
    for (const size of sizes) {
      for (const ad of [new Uint8Array(0), rand(32)]) {
        const key = rand(32);
        const nonce = rand(12);
        const pt = rand(size);
        const a = openssl.crypto.chaCha20Poly1305Encrypt(pt, nonce, ad, key);
        const b = wasm.crypto.chaCha20Poly1305Encrypt(pt, nonce, ad, key);
        if (toHex(a) !== toHex(b)) throw new Error(`mismatch at size=${size} ad=${ad.byteLength}`);
        expect(toHex(wasm.crypto.chaCha20Poly1305Decrypt(a, nonce, ad, key))).toBe(toHex(pt));
        expect(toHex(openssl.crypto.chaCha20Poly1305Decrypt(b, nonce, ad, key))).toBe(toHex(pt));
      }
    }
  });

  describe('openssl specifics', () => {
    const aead = loadOpenSslChaCha();

    test('rejects wrong key / nonce lengths before touching native memory', () => {
      expect(() => aead.encrypt(rand(10), rand(12), rand(0), rand(16))).toThrow(RangeError);
      expect(() => aead.encrypt(rand(10), rand(8), rand(0), rand(32))).toThrow(RangeError);
      expect(() => aead.decrypt(rand(40), rand(12), rand(0), rand(33))).toThrow(RangeError);
      expect(() => aead.decrypt(rand(40), rand(24), rand(0), rand(32))).toThrow(RangeError);
    });

    test('long AD (beyond the 32 bytes noise uses) matches the reference', () => {
      for (const adLen of [33, 64, 1000, 70_000]) {
        const key = rand(32);
        const nonce = rand(12);
        const ad = rand(adLen);
        const pt = rand(1234);
        const ct = aead.encrypt(pt, nonce, ad, key);
        expect(toHex(ct)).toBe(toHex(pureJsCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, key)));
        expect(toHex(aead.decrypt(ct, nonce, ad, key))).toBe(toHex(pt));
      }
    });

    test('zeroes dst when authentication fails', () => {
      const key = rand(32);
      const nonce = rand(12);
      const ct = Uint8Array.from(aead.encrypt(rand(2000), nonce, rand(0), key));
      ct[ct.byteLength - 1] = (ct[ct.byteLength - 1] ?? 0) ^ 1;
      const dst = new Uint8Array(2000).fill(7);
      expect(() => aead.decrypt(ct, nonce, rand(0), key, dst)).toThrow('Invalid chacha20poly1305 decryption');
      expect(dst.every((b) => b === 0)).toBe(true);
    });

    test('partially overlapping dst is not written through (would corrupt), result still correct', () => {
      const key = rand(32);
      const nonce = rand(12);
      const pt = rand(3000);
      const ct = aead.encrypt(pt, nonce, rand(0), key);
      const buf = new Uint8Array(ct.byteLength + 100);
      buf.set(ct, 50);
      const src = buf.subarray(50, 50 + ct.byteLength);
      const dst = buf.subarray(10, 10 + 3000); // starts 40 bytes earlier: partial overlap
      const out = aead.decrypt(src, nonce, rand(0), key, dst);
      expect(toHex(out)).toBe(toHex(pt));
    });

    test('dst larger than needed is used via a prefix view', () => {
      const key = rand(32);
      const nonce = rand(12);
      const pt = rand(100);
      const ct = aead.encrypt(pt, nonce, rand(0), key);
      const dst = new Uint8Array(500);
      const out = aead.decrypt(ct, nonce, rand(0), key, dst);
      expect(out.buffer).toBe(dst.buffer);
      expect(toHex(dst.subarray(0, 100))).toBe(toHex(pt));
    });

    test('many interleaved operations with different keys stay correct (shared contexts)', () => {
      const keys = [rand(32), rand(32), rand(32)];
      for (let i = 0; i < 300; i++) {
        const key = keys[i % 3] ?? rand(32);
        const nonce = rand(12);
        const ad = rand(i % 5);
        const pt = rand(i * 37);
        const ct = aead.encrypt(pt, nonce, ad, key);
        expect(toHex(ct)).toBe(toHex(pureJsCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, key)));
        // interleave a decrypt under another key to exercise the other context
        const other = keys[(i + 1) % 3] ?? rand(32);
        const ct2 = pureJsCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, other);
        expect(toHex(aead.decrypt(ct2, nonce, ad, other))).toBe(toHex(pt));
      }
    });
  });
}
