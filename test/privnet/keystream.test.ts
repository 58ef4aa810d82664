import { describe, expect, test } from 'bun:test';
import { createHmac } from 'node:crypto';
import { chachaBlock, chachaXorRef, ivAt } from '../../src/tunnel/privnet/chacha-ref.ts';
import { deriveDirectionKeys, deriveSwarmKey } from '../../src/tunnel/privnet/kdf.ts';
import type { KeystreamFactory, PrivnetLog } from '../../src/tunnel/privnet/index.ts';
import { loadPrivnetCipher, createPrivateNetwork } from '../../src/tunnel/privnet/index.ts';
import { nobleKeystreamFactory } from '../../src/tunnel/privnet/noble.ts';
import { tryLoadOpenSslKeystream } from '../../src/tunnel/privnet/openssl.ts';
import { RFC8439_2_3_2, RFC8439_2_4_2, RFC8439_A_1_1, toHex } from '../../src/tunnel/privnet/self-test.ts';

const openssl = tryLoadOpenSslKeystream();
const providers: KeystreamFactory[] = openssl.ok ? [openssl.factory, nobleKeystreamFactory] : [nobleKeystreamFactory];
if (!openssl.ok) console.warn(`[privnet] OpenSSL unavailable, testing the fallback only: ${openssl.error}`);

/** Encrypts `src` with a fresh keystream, calling xor() once per piece of `splits` (the rest in one call). */
function xorSplit(f: KeystreamFactory, key: Uint8Array, iv: Uint8Array, src: Uint8Array, splits: number[], inPlace = false): Uint8Array {
  const ks = f.create(key, iv);
  try {
    const out = inPlace ? Uint8Array.from(src) : new Uint8Array(src.byteLength);
    const from = inPlace ? out : src;
    let off = 0;
    for (const n of [...splits, Infinity]) {
      const end = Math.min(off + n, src.byteLength);
      if (end > off) ks.xor(from.subarray(off, end), out.subarray(off, end));
      off = end;
    }
    return out;
  } finally {
    ks.destroy();
  }
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(i + 65536, n)));
  return b;
}

/** Deterministic pseudo-random split sizes (some 0, many odd, a few large). */
function splitsFor(seed: number, total: number): number[] {
  const out: number[] = [];
  let x = seed >>> 0 || 1;
  let sum = 0;
  while (sum < total) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const n = x % 7 === 0 ? 0 : x % 5 === 0 ? x % 70_000 : x % 200;
    out.push(n);
    sum += n;
  }
  return out;
}

describe('reference block function', () => {
  test('RFC 8439 §2.3.2 block', () => {
    expect(toHex(chachaBlock(RFC8439_2_3_2.key, RFC8439_2_3_2.iv))).toBe(toHex(RFC8439_2_3_2.block));
  });
  test('RFC 8439 §2.4.2 encryption', () => {
    expect(toHex(chachaXorRef(RFC8439_2_4_2.key, RFC8439_2_4_2.iv, RFC8439_2_4_2.plaintext))).toBe(toHex(RFC8439_2_4_2.ciphertext));
  });
});

for (const f of providers) {
  describe(`${f.provider} keystream`, () => {
    test('RFC 8439 A.1 #1: zero key, zero iv (the privnet mode)', () => {
      expect(toHex(xorSplit(f, RFC8439_A_1_1.key, RFC8439_A_1_1.iv, new Uint8Array(64), []))).toBe(toHex(RFC8439_A_1_1.keystream));
    });

    test('RFC 8439 §2.4.2 in one call, byte by byte, and in place', () => {
      const v = RFC8439_2_4_2;
      expect(toHex(xorSplit(f, v.key, v.iv, v.plaintext, []))).toBe(toHex(v.ciphertext));
      expect(toHex(xorSplit(f, v.key, v.iv, v.plaintext, Array(200).fill(1)))).toBe(toHex(v.ciphertext));
      expect(toHex(xorSplit(f, v.key, v.iv, v.plaintext, [3, 61, 1], true))).toBe(toHex(v.ciphertext));
    });

    test('decrypting is the same operation (XOR round trip)', () => {
      const key = randomBytes(32);
      const iv = new Uint8Array(16);
      const pt = randomBytes(10_000);
      const ct = xorSplit(f, key, iv, pt, [17, 4096]);
      expect(toHex(xorSplit(f, key, iv, ct, [1000]))).toBe(toHex(pt));
    });

    test('the 64-bit block counter carries past 2^32 blocks instead of wrapping', () => {
      const key = randomBytes(32);
      const tail = randomBytes(8);
      const start = 2 ** 32 - 3;
      const want = new Uint8Array(6 * 64);
      for (let b = 0; b < 6; b++) want.set(chachaBlock(key, ivAt(start + b, tail)), b * 64);
      for (const splits of [[], [1], [64], [100, 100], [63, 65, 64], [200]]) {
        expect(toHex(xorSplit(f, key, ivAt(start, tail), new Uint8Array(6 * 64), splits))).toBe(toHex(want));
      }
      // ...and the keystream after the carry is not the one from counter 0.
      expect(toHex(want.subarray(3 * 64, 4 * 64))).not.toBe(toHex(chachaBlock(key, ivAt(0, tail))));
    });

    test('rejects bad key / iv lengths and partially overlapping buffers; destroy() is final', () => {
      expect(() => f.create(new Uint8Array(31), new Uint8Array(16))).toThrow(RangeError);
      expect(() => f.create(new Uint8Array(32), new Uint8Array(12))).toThrow(RangeError);
      const ks = f.create(new Uint8Array(32), new Uint8Array(16));
      const buf = new Uint8Array(100);
      expect(() => ks.xor(buf.subarray(0, 50), buf.subarray(10, 60))).toThrow(RangeError);
      expect(() => ks.xor(buf.subarray(0, 50), new Uint8Array(49))).toThrow(RangeError);
      ks.destroy();
      ks.destroy();
      expect(() => ks.xor(buf, buf)).toThrow();
    });
  });
}

describe('providers agree', () => {
  test('on 1 MiB of random data split at arbitrary points, unaligned, in and out of place', () => {
    if (providers.length < 2) return;
    const [a, b] = providers as [KeystreamFactory, KeystreamFactory];
    const key = randomBytes(32);
    const iv = new Uint8Array(16);
    const data = randomBytes(1024 * 1024 + 7);
    const whole = xorSplit(a, key, iv, data, []);
    for (let seed = 1; seed <= 6; seed++) {
      const splits = splitsFor(seed * 7919, data.byteLength);
      expect(toHex(xorSplit(a, key, iv, data, splits, seed % 2 === 0))).toBe(toHex(whole));
      expect(toHex(xorSplit(b, key, iv, data, splits, seed % 2 === 1))).toBe(toHex(whole));
    }
    // Unaligned source and destination views.
    const src = new Uint8Array(data.byteLength + 3);
    src.set(data, 3);
    const ks = b.create(key, iv);
    const dst = new Uint8Array(data.byteLength + 1);
    ks.xor(src.subarray(3, 3 + 100_001), dst.subarray(1, 1 + 100_001));
    ks.xor(src.subarray(3 + 100_001), dst.subarray(1 + 100_001));
    ks.destroy();
    expect(toHex(dst.subarray(1))).toBe(toHex(whole));
  });
});

describe('key schedule', () => {
  test('matches the documented HMAC construction and is direction-symmetric', () => {
    const secret = new TextEncoder().encode('mesh secret');
    const swarm = deriveSwarmKey(secret);
    expect(toHex(swarm)).toBe(createHmac('sha256', secret).update('edgemesh privnet key v1').digest('hex'));
    const na = randomBytes(24);
    const nb = randomBytes(24);
    const a = deriveDirectionKeys(swarm, na, nb);
    const b = deriveDirectionKeys(swarm, nb, na);
    const expectOut = createHmac('sha256', swarm).update('edgemesh privnet v1 ').update(na).update(nb).digest('hex');
    expect(toHex(a.out)).toBe(expectOut);
    expect(toHex(a.out)).toBe(toHex(b.in));
    expect(toHex(a.in)).toBe(toHex(b.out));
    expect(toHex(a.in)).not.toBe(toHex(a.out));
  });
});

describe('provider selection', () => {
  const recorder = (): { log: PrivnetLog; lines: Array<[string, string]> } => {
    const lines: Array<[string, string]> = [];
    return { log: (level, msg) => lines.push([level, msg]), lines };
  };

  test('auto prefers OpenSSL and says so', () => {
    if (!openssl.ok) return;
    const r = recorder();
    const pn = createPrivateNetwork(new Uint8Array([1]), { log: r.log, env: {} });
    expect(pn.provider).toBe('openssl');
    expect(pn().provider).toBe('openssl');
    expect(r.lines.filter(([l]) => l === 'warn')).toEqual([]);
  });

  test('falls back to noble with a warning when libcrypto cannot load', () => {
    const r = recorder();
    const pn = createPrivateNetwork(new Uint8Array([1]), { log: r.log, libcryptoPaths: ['/nonexistent/libcrypto.so.3'] });
    expect(pn.provider).toBe('noble');
    const warns = r.lines.filter(([l]) => l === 'warn').map(([, m]) => m);
    expect(warns.length).toBe(1);
    expect(warns[0]).toContain('falling back');
    expect(warns[0]).toContain('/nonexistent/libcrypto.so.3');
  });

  test('EDGEMESH_LIBCRYPTO is honoured; provider "openssl" throws instead of falling back', () => {
    expect(loadPrivnetCipher({ env: { EDGEMESH_LIBCRYPTO: '/nonexistent/x.so' } }).provider).toBe('noble');
    expect(() => loadPrivnetCipher({ provider: 'openssl', libcryptoPaths: ['/nonexistent/x.so'] })).toThrow(/OpenSSL required/);
    expect(loadPrivnetCipher({ provider: 'noble' }).provider).toBe('noble');
  });
});
