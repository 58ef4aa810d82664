/**
 * Crypto provider for @chainsafe/libp2p-noise under Bun.
 *
 * noise's default crypto calls node:crypto's `chacha20-poly1305` for frames
 * >= 1200 bytes, which Bun does not implement (ERR_CRYPTO_UNKNOWN_CIPHER kills
 * the process). This module supplies a complete ICryptoInterface:
 *  - AEAD: system OpenSSL via bun:ffi when it loads and passes its self-test,
 *    otherwise noise's wasm implementation (as-chacha20poly1305), with a warning.
 *  - SHA-256 / HKDF / X25519: the fastest implementation that is verified,
 *    once per process, to agree with noise's pure-JS reference.
 *
 * Environment:
 *  - EDGEMESH_CRYPTO=wasm|openssl|auto  force the fallback / require OpenSSL (default auto)
 *  - EDGEMESH_LIBCRYPTO=/a/libcrypto.so.3:/b/...  libcrypto candidates to try instead of the defaults
 */
import { delimiter } from 'node:path';
import { hkdfSync } from 'node:crypto';
import { asCrypto, defaultCrypto, pureJsCrypto } from '@chainsafe/libp2p-noise/crypto';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultLibcryptoCandidates, tryLoadOpenSslChaCha } from './openssl-chacha.ts';
import type { NoiseBytes } from './openssl-chacha.ts';

export type CryptoProvider = 'openssl' | 'wasm';
export type CryptoLog = (level: 'info' | 'warn', msg: string) => void;

export interface NoiseCryptoOptions {
  /** Overrides EDGEMESH_CRYPTO. 'openssl' throws if libcrypto is unusable; 'auto' falls back. */
  provider?: CryptoProvider | 'auto';
  /** Overrides EDGEMESH_LIBCRYPTO: dlopen() names / paths to try in order. */
  libcryptoPaths?: readonly string[];
  /** Environment to read instead of process.env (tests). */
  env?: Record<string, string | undefined>;
}

export interface NoiseCrypto {
  /** Pass as `noise({ crypto })`. */
  crypto: ICryptoInterface;
  /** Which AEAD implementation is in use. */
  provider: CryptoProvider;
  /** Human-readable description, e.g. "OpenSSL 3.0.13 (libcrypto.so.3)". */
  detail: string;
}

export { ChaChaAuthError, defaultLibcryptoCandidates, loadOpenSslChaCha, tryLoadOpenSslChaCha } from './openssl-chacha.ts';
export type { LoadOpenSslOptions, LoadResult, NoiseBytes, OpenSslChaCha } from './openssl-chacha.ts';

const providers = new WeakMap<ICryptoInterface, CryptoProvider>();

/** Which AEAD provider a crypto object from createNoiseCrypto() uses (undefined for foreign objects). */
export function getCryptoProvider(crypto: ICryptoInterface): CryptoProvider | undefined {
  return providers.get(crypto);
}

export function createNoiseCrypto(log?: CryptoLog, opts: NoiseCryptoOptions = {}): NoiseCrypto {
  const emit: CryptoLog = log ?? (() => {});
  const env = opts.env ?? process.env;

  let want = opts.provider;
  if (want === undefined) {
    const raw = env.EDGEMESH_CRYPTO?.trim().toLowerCase();
    if (raw === undefined || raw === '' || raw === 'auto') want = 'auto';
    else if (raw === 'wasm' || raw === 'openssl') want = raw;
    else {
      emit('warn', `noise crypto: ignoring unknown EDGEMESH_CRYPTO=${raw} (expected wasm|openssl|auto)`);
      want = 'auto';
    }
  }

  const base = fastPrimitives();
  let result: NoiseCrypto;
  if (want === 'wasm') {
    emit('info', 'noise crypto: ChaCha20-Poly1305 via wasm (forced by configuration)');
    result = wasmCrypto(base, 'wasm (forced)');
  } else {
    const envPaths = env.EDGEMESH_LIBCRYPTO?.split(delimiter).map((p) => p.trim()).filter((p) => p !== '');
    const libraryPaths = opts.libcryptoPaths ?? (envPaths !== undefined && envPaths.length > 0 ? envPaths : defaultLibcryptoCandidates());
    const loaded = tryLoadOpenSslChaCha({ libraryPaths });
    if (loaded.ok) {
      const { aead } = loaded;
      const detail = `${aead.version} (${aead.libraryPath})`;
      emit('info', `noise crypto: ChaCha20-Poly1305 via ${detail}`);
      result = {
        provider: 'openssl',
        detail,
        crypto: {
          ...base,
          chaCha20Poly1305Encrypt: aead.encrypt,
          chaCha20Poly1305Decrypt: aead.decrypt,
        },
      };
    } else if (want === 'openssl') {
      throw new Error(`noise crypto: OpenSSL required but unavailable: ${loaded.error}`);
    } else {
      emit(
        'warn',
        `noise crypto: OpenSSL libcrypto unavailable, falling back to wasm ChaCha20-Poly1305 (~40x slower per stream): ${loaded.error}`,
      );
      result = wasmCrypto(base, 'wasm (fallback)');
    }
  }
  providers.set(result.crypto, result.provider);
  return result;
}

type Primitives = Omit<ICryptoInterface, 'chaCha20Poly1305Encrypt' | 'chaCha20Poly1305Decrypt'>;

function wasmCrypto(base: Primitives, detail: string): NoiseCrypto {
  // as-chacha20poly1305 matches noble at 64 KiB (~60 MB/s enc+dec) and is
  // several times faster on small frames, so it is the better fallback.
  return {
    provider: 'wasm',
    detail,
    crypto: {
      ...base,
      chaCha20Poly1305Encrypt: asCrypto.chaCha20Poly1305Encrypt,
      chaCha20Poly1305Decrypt: asCrypto.chaCha20Poly1305Decrypt,
    },
  };
}

// --- non-AEAD primitives ----------------------------------------------------

const EMPTY = new Uint8Array(0);

const bunSha256 = (data: NoiseBytes): Uint8Array => {
  // Bun.CryptoHasher is native and ~3x faster than node:crypto createHash in Bun.
  const h = new Bun.CryptoHasher('sha256');
  if (data instanceof Uint8Array) h.update(data);
  else for (const buf of data) h.update(buf);
  return h.digest();
};

const nodeHkdf = (ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] => {
  // Noise HKDF = RFC 5869 with salt = chaining key, empty info, 3 x 32 bytes out.
  const okm = new Uint8Array(hkdfSync('sha256', ikm, ck, EMPTY, 96));
  return [okm.subarray(0, 32), okm.subarray(32, 64), okm.subarray(64, 96)];
};

let primitives: Primitives | undefined;

/**
 * Picks each primitive's fast native variant only if it runs and matches the
 * pure-JS reference on this runtime (Bun's node:crypto coverage has gaps, as
 * the missing chacha20-poly1305 shows). Computed once per process.
 */
function fastPrimitives(): Primitives {
  if (primitives !== undefined) return primitives;
  const ref = pureJsCrypto;
  const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
  const works = (check: () => boolean): boolean => {
    try {
      return check();
    } catch {
      return false;
    }
  };
  const seedA = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  const seedB = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);
  const msg = Uint8Array.from({ length: 100 }, (_, i) => i);

  const hashOk = works(() => same(bunSha256(msg), ref.hashSHA256(msg)));
  const hkdfOk = works(() => {
    const a = nodeHkdf(seedA, seedB);
    const b = ref.getHKDF(seedA, seedB);
    return a.every((x, i) => same(x, b[i] ?? EMPTY));
  });
  const x25519Ok = works(() => {
    const a = defaultCrypto.generateX25519KeyPairFromSeed(seedA);
    const b = ref.generateX25519KeyPairFromSeed(seedB);
    if (!same(a.publicKey, ref.generateX25519KeyPairFromSeed(seedA).publicKey)) return false;
    const kp = defaultCrypto.generateX25519KeyPair();
    if (kp.publicKey.byteLength !== 32 || kp.privateKey.byteLength !== 32) return false;
    if (!same(kp.publicKey, ref.generateX25519KeyPairFromSeed(kp.privateKey).publicKey)) return false;
    return same(
      defaultCrypto.generateX25519SharedKey(a.privateKey, b.publicKey),
      ref.generateX25519SharedKey(b.privateKey, a.publicKey),
    );
  });

  const x = x25519Ok ? defaultCrypto : ref;
  primitives = {
    hashSHA256: hashOk ? bunSha256 : ref.hashSHA256,
    getHKDF: hkdfOk ? nodeHkdf : ref.getHKDF,
    generateX25519KeyPair: x.generateX25519KeyPair,
    generateX25519KeyPairFromSeed: x.generateX25519KeyPairFromSeed,
    generateX25519SharedKey: x.generateX25519SharedKey,
  };
  return primitives;
}
