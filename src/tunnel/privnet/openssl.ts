/**
 * ChaCha20 keystream from the system OpenSSL libcrypto via bun:ffi.
 *
 * One EVP_CIPHER_CTX per Keystream, initialised once; EVP_EncryptUpdate
 * keeps the block counter and any partial-block keystream inside the
 * context, so the stream continues across calls of any size.
 *
 * FFI rules (same as ../crypto/openssl-chacha.ts, whose library candidates
 * we reuse): buffers go to native code as TypedArray arguments, never as raw
 * ptr() numbers; zero-length buffers are never passed; key/iv lengths are
 * validated first because OpenSSL reads exactly 32/16 bytes.
 */
import { EVP_COMMON, loadFirstUsable } from '../crypto/libcrypto.ts';
import { dlopen, FFIType } from 'bun:ffi';
import type { Pointer } from 'bun:ffi';
import { defaultLibcryptoCandidates } from '../crypto/openssl-chacha.ts';
import { checkKeyIv, checkXorArgs } from './keystream.ts';
import type { Keystream, KeystreamFactory } from './keystream.ts';
import { selfTest } from './self-test.ts';

const SYMBOLS = {
  ...EVP_COMMON,
  EVP_chacha20: { args: [], returns: FFIType.ptr },
} as const;

type Syms = ReturnType<typeof dlopen<typeof SYMBOLS>>['symbols'];
// What EVP_CIPHER_CTX_new() returns when not NULL (bun types it as Pointer | bigint).
type Ctx = Pointer | bigint;

export type OpenSslLoad = { ok: true; factory: KeystreamFactory } | { ok: false; error: string };

// EVP_EncryptUpdate takes an int length; stay far below INT_MAX.
const MAX_UPDATE = 1 << 30;

const cache = new Map<string, OpenSslLoad>();

/** dlopen()s the first candidate whose ChaCha20 passes the self-test; never throws; cached per candidate list. */
export function tryLoadOpenSslKeystream(libraryPaths: readonly string[] = defaultLibcryptoCandidates()): OpenSslLoad {
  const key = libraryPaths.join('\0');
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const result = load(libraryPaths);
  cache.set(key, result);
  return result;
}

function load(candidates: readonly string[]): OpenSslLoad {
  const r = loadFirstUsable(candidates, SYMBOLS, (syms, path) => {
    const factory = bind(syms, path);
    selfTest(factory);
    return factory;
  });
  return r.ok ? { ok: true, factory: r.value } : r;
}

function bind(s: Syms, libraryPath: string): KeystreamFactory {
  const cipher = s.EVP_chacha20();
  if (cipher === null) throw new Error('EVP_chacha20() returned NULL');
  const { EVP_CIPHER_CTX_new, EVP_CIPHER_CTX_free, EVP_EncryptInit_ex, EVP_EncryptUpdate } = s;
  // Shared `int *outl`: JS calls these synchronously on one thread.
  const outLen = new Int32Array(1);
  // Frees contexts of keystreams dropped without destroy() (e.g. a protect()
  // that failed half-way); destroy() unregisters, so no double free.
  const finalizer = new FinalizationRegistry<Ctx>((ctx) => EVP_CIPHER_CTX_free(ctx));

  class OpenSslKeystream implements Keystream {
    #ctx: Ctx | null;

    constructor(key: Uint8Array, iv: Uint8Array) {
      checkKeyIv(key, iv);
      const ctx = EVP_CIPHER_CTX_new();
      if (ctx === null) throw new Error('EVP_CIPHER_CTX_new() returned NULL');
      if (EVP_EncryptInit_ex(ctx, cipher, null, key, iv) !== 1) {
        EVP_CIPHER_CTX_free(ctx);
        throw new Error('EVP_EncryptInit_ex(chacha20) failed');
      }
      this.#ctx = ctx;
      finalizer.register(this, ctx, this);
    }

    xor(src: Uint8Array, dst: Uint8Array): void {
      const ctx = this.#ctx;
      if (ctx === null) throw new Error('openssl chacha20: keystream destroyed');
      checkXorArgs(src, dst);
      const total = src.byteLength;
      for (let off = 0; off < total; off += MAX_UPDATE) {
        const n = Math.min(MAX_UPDATE, total - off);
        const i = off === 0 ? src : src.subarray(off, off + n);
        const o = off === 0 ? dst : dst.subarray(off, off + n);
        // A stream cipher never buffers, so anything but n bytes out would shift the stream.
        if (EVP_EncryptUpdate(ctx, o, outLen, i, n) !== 1 || outLen[0] !== n) {
          throw new Error('openssl chacha20: EVP_EncryptUpdate failed');
        }
      }
    }

    destroy(): void {
      const ctx = this.#ctx;
      if (ctx === null) return;
      this.#ctx = null;
      finalizer.unregister(this);
      EVP_CIPHER_CTX_free(ctx);
    }
  }

  const version = s.OpenSSL_version(0)?.toString() ?? 'unknown';
  return {
    provider: 'openssl',
    detail: `${version} (${libraryPath})`,
    create: (key, iv) => new OpenSslKeystream(key, iv),
  };
}
