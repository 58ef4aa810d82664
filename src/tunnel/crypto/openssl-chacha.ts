/**
 * ChaCha20-Poly1305 (RFC 8439, IETF variant: 32-byte key, 12-byte nonce,
 * 16-byte tag) backed by the system OpenSSL libcrypto through `bun:ffi`.
 *
 * Why: Bun's node:crypto has no `chacha20-poly1305`, so noise's default
 * crypto crashes on the first large frame, and the wasm / pure-JS ciphers
 * top out around 60 MB/s. libcrypto's assembly implementation is ~40x faster.
 *
 * FFI rules this file follows (violating any of them corrupts memory rather
 * than throwing):
 *  - Buffers are passed to native code as TypedArray arguments, never as raw
 *    `ptr()` numbers, so the array object is on the JS stack for the whole
 *    call and Bun resolves subarray byteOffsets itself.
 *  - Key and nonce lengths are validated before OpenSSL reads them: it reads
 *    exactly 32 / 12 bytes regardless of the JS array size.
 *  - Zero-length buffers are never handed to native code (`ptr()` rejects
 *    them and what a TypedArray argument turns into is unspecified).
 *  - Input and output may alias only when they start at the same address
 *    (OpenSSL supports exact in-place but not partially overlapping buffers).
 */
import { EVP_COMMON, loadFirstUsable } from './libcrypto.ts';
import { dlopen, FFIType } from 'bun:ffi';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';

/** What noise hands us: a Uint8Array or a Uint8ArrayList (derived, so we need no direct dependency). */
export type NoiseBytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0];
type ByteList = Exclude<NoiseBytes, Uint8Array>;

export const CHACHA_KEY_LENGTH = 32;
export const CHACHA_NONCE_LENGTH = 12;
export const CHACHA_TAG_LENGTH = 16;
/** bytes left free in front of every ciphertext, for noise's length prefix (noise-frames.ts) */
export const FRAME_HEADROOM = 2;

const EVP_CTRL_AEAD_SET_IVLEN = 0x9;
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;

/** Thrown when authentication fails; same message as noise's own implementations. */
export class ChaChaAuthError extends Error {
  constructor() {
    super('Invalid chacha20poly1305 decryption');
    this.name = 'ChaChaAuthError';
  }
}

export interface OpenSslChaCha {
  /** The dlopen() name that succeeded. */
  readonly libraryPath: string;
  /** OpenSSL_version(OPENSSL_VERSION) of the loaded library. */
  readonly version: string;
  /**
   * Returns ciphertext || tag (plaintext.byteLength + 16 bytes), freshly
   * allocated at offset FRAME_HEADROOM of its own ArrayBuffer.
   */
  encrypt(plaintext: NoiseBytes, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array): Uint8Array;
  /**
   * Returns the plaintext or throws ChaChaAuthError. When `dst` is given and
   * big enough it is written into (it may start at the same address as the
   * ciphertext, as noise does for in-place decryption). On failure the output
   * region is zeroed so unauthenticated plaintext never leaks.
   */
  decrypt(ciphertext: NoiseBytes, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array, dst?: Uint8Array): Uint8Array;
  /** ciphertext || tag written into `dst` (no allocation); returns that view of it */
  encryptTo(dst: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array): Uint8Array;
}

export interface LoadOpenSslOptions {
  /** dlopen() names / paths to try in order. Defaults to defaultLibcryptoCandidates(). */
  libraryPaths?: readonly string[];
}

export type LoadResult =
  | { ok: true; aead: OpenSslChaCha }
  | { ok: false; error: string };

/**
 * Sonames first (respect the dynamic linker's search path / LD_LIBRARY_PATH),
 * then common absolute locations for distros whose linker cache lacks them.
 * The unversioned macOS /usr/lib/libcrypto.dylib is deliberately absent: the
 * system aborts processes that load it.
 */
export function defaultLibcryptoCandidates(): string[] {
  const names = ['libcrypto.so.3', 'libcrypto.so.1.1'];
  const dirs = [
    '/usr/lib/x86_64-linux-gnu',
    '/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/lib64',
    '/usr/lib',
    '/lib',
    '/usr/local/lib',
  ];
  const out = [...names];
  for (const dir of dirs) for (const n of names) out.push(`${dir}/${n}`);
  out.push(
    'libcrypto.3.dylib',
    '/opt/homebrew/opt/openssl@3/lib/libcrypto.3.dylib',
    '/usr/local/opt/openssl@3/lib/libcrypto.3.dylib',
  );
  return out;
}

const SYMBOLS = {
  ...EVP_COMMON,
  EVP_chacha20_poly1305: { args: [], returns: FFIType.ptr },
  EVP_CIPHER_CTX_ctrl: { args: [FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  EVP_EncryptFinal_ex: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  EVP_DecryptInit_ex: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  EVP_DecryptUpdate: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32],
    returns: FFIType.i32,
  },
  EVP_DecryptFinal_ex: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
} as const;

type Syms = ReturnType<typeof dlopen<typeof SYMBOLS>>['symbols'];

// One loaded instance per distinct candidate list: contexts are process-lifetime
// singletons, so repeated createNoiseCrypto() calls must not leak new ones.
const cache = new Map<string, LoadResult>();

/** Loads libcrypto and self-tests it; never throws. Results are cached per candidate list. */
export function tryLoadOpenSslChaCha(opts: LoadOpenSslOptions = {}): LoadResult {
  const candidates = opts.libraryPaths ?? defaultLibcryptoCandidates();
  const key = candidates.join('\0');
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const result = load(candidates);
  cache.set(key, result);
  return result;
}

/** Like tryLoadOpenSslChaCha but throws with the per-candidate reasons. */
export function loadOpenSslChaCha(opts: LoadOpenSslOptions = {}): OpenSslChaCha {
  const r = tryLoadOpenSslChaCha(opts);
  if (!r.ok) throw new Error(r.error);
  return r.aead;
}

function load(candidates: readonly string[]): LoadResult {
  const r = loadFirstUsable(candidates, SYMBOLS, (syms, path) => {
    const aead = bind(syms, path);
    selfTest(aead);
    return aead;
  });
  return r.ok ? { ok: true, aead: r.value } : r;
}

function isList(b: NoiseBytes): b is ByteList {
  return !(b instanceof Uint8Array);
}

function checkKeyNonce(key: Uint8Array, nonce: Uint8Array): void {
  if (key.byteLength !== CHACHA_KEY_LENGTH) throw new RangeError(`chacha20poly1305 key must be 32 bytes, got ${key.byteLength}`);
  if (nonce.byteLength !== CHACHA_NONCE_LENGTH) throw new RangeError(`chacha20poly1305 nonce must be 12 bytes, got ${nonce.byteLength}`);
}

/** True when writing `len` bytes at out[0] while reading from src would partially overlap. */
function partialOverlap(out: Uint8Array, outOff: number, src: Uint8Array, len: number): boolean {
  if (out.buffer !== src.buffer) return false;
  const o = out.byteOffset + outOff;
  const s = src.byteOffset;
  if (o === s) return false;
  return o < s + len && s < o + len;
}

function bind(s: Syms, libraryPath: string): OpenSslChaCha {
  const cipher = s.EVP_chacha20_poly1305();
  if (cipher === null) throw new Error('EVP_chacha20_poly1305() returned NULL');

  // Contexts are created once with the cipher bound; each operation only
  // re-keys them (cipher = NULL), which skips OpenSSL 3's per-init fetch.
  // JS runs these synchronously on one thread, so one per direction suffices.
  const newCtx = (init: typeof s.EVP_EncryptInit_ex): NonNullable<ReturnType<typeof s.EVP_CIPHER_CTX_new>> => {
    const ctx = s.EVP_CIPHER_CTX_new();
    if (ctx === null) throw new Error('EVP_CIPHER_CTX_new() returned NULL');
    if (init(ctx, cipher, null, null, null) !== 1) {
      s.EVP_CIPHER_CTX_free(ctx);
      throw new Error('EVP_*Init_ex(chacha20-poly1305) failed');
    }
    if (s.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, CHACHA_NONCE_LENGTH, null) !== 1) {
      s.EVP_CIPHER_CTX_free(ctx);
      throw new Error('EVP_CTRL_AEAD_SET_IVLEN failed');
    }
    return ctx;
  };
  const encCtx = newCtx(s.EVP_EncryptInit_ex);
  const decCtx = newCtx(s.EVP_DecryptInit_ex);

  const outLen = new Int32Array(1); // OpenSSL's `int *outl`
  const finalScratch = new Uint8Array(CHACHA_TAG_LENGTH); // Final_ex writes 0 bytes for this stream cipher, but wants a valid pointer
  const tagScratch = new Uint8Array(CHACHA_TAG_LENGTH); // tag copy for list inputs / in-place safety

  const { EVP_EncryptInit_ex, EVP_EncryptUpdate, EVP_EncryptFinal_ex, EVP_CIPHER_CTX_ctrl } = s;
  const { EVP_DecryptInit_ex, EVP_DecryptUpdate, EVP_DecryptFinal_ex } = s;

  const fail = (what: string): never => {
    throw new Error(`openssl chacha20poly1305: ${what} failed`);
  };

  // Update with an exact-length check: a future OpenSSL that buffered would
  // otherwise silently shift output.
  const encUpdate = (out: Uint8Array, inp: Uint8Array, len: number): void => {
    if (EVP_EncryptUpdate(encCtx, out, outLen, inp, len) !== 1 || outLen[0] !== len) fail('EVP_EncryptUpdate');
  };
  const decUpdate = (out: Uint8Array, inp: Uint8Array, len: number): void => {
    if (EVP_DecryptUpdate(decCtx, out, outLen, inp, len) !== 1 || outLen[0] !== len) fail('EVP_DecryptUpdate');
  };

  const encrypt = (plaintext: NoiseBytes, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array): Uint8Array => {
    checkKeyNonce(key, nonce);
    const len = plaintext.byteLength;
    // allocUnsafeSlow: no zero-filling (every byte is overwritten below) and
    // never a slice of the shared pool, so the headroom is ours
    const out = Buffer.allocUnsafeSlow(FRAME_HEADROOM + len + CHACHA_TAG_LENGTH).subarray(FRAME_HEADROOM);
    if (EVP_EncryptInit_ex(encCtx, null, null, key, nonce) !== 1) fail('EVP_EncryptInit_ex');
    if (ad.byteLength > 0 && EVP_EncryptUpdate(encCtx, null, outLen, ad, ad.byteLength) !== 1) fail('AAD update');
    if (!isList(plaintext)) {
      if (len > 0) encUpdate(out, plaintext, len);
    } else {
      let off = 0;
      for (const buf of plaintext) {
        const n = buf.byteLength;
        if (n === 0) continue;
        encUpdate(off === 0 ? out : out.subarray(off), buf, n);
        off += n;
      }
      if (off !== len) fail('list length mismatch');
    }
    if (EVP_EncryptFinal_ex(encCtx, finalScratch, outLen) !== 1) fail('EVP_EncryptFinal_ex');
    if (EVP_CIPHER_CTX_ctrl(encCtx, EVP_CTRL_AEAD_GET_TAG, CHACHA_TAG_LENGTH, out.subarray(len)) !== 1) fail('GET_TAG');
    return out;
  };

  const decrypt = (
    ciphertext: NoiseBytes,
    nonce: Uint8Array,
    ad: Uint8Array,
    key: Uint8Array,
    dst?: Uint8Array,
  ): Uint8Array => {
    checkKeyNonce(key, nonce);
    const total = ciphertext.byteLength;
    if (total < CHACHA_TAG_LENGTH) throw new ChaChaAuthError();
    const len = total - CHACHA_TAG_LENGTH;

    let out: Uint8Array | undefined;
    if (dst !== undefined && dst.byteLength >= len) {
      out = dst.byteLength === len ? dst : dst.subarray(0, len);
      if (!isList(ciphertext)) {
        if (partialOverlap(out, 0, ciphertext, len)) out = undefined;
      } else {
        let off = 0;
        for (const buf of ciphertext) {
          if (off >= len) break;
          const n = Math.min(buf.byteLength, len - off);
          if (n > 0 && partialOverlap(out, off, buf, n)) {
            out = undefined;
            break;
          }
          off += n;
        }
      }
    }
    if (out === undefined) out = Buffer.allocUnsafe(len);

    // Copy the tag out first: with in-place decryption nothing overwrites it,
    // but a list's subarray() may allocate anyway and this keeps one code path.
    if (!isList(ciphertext)) tagScratch.set(ciphertext.subarray(len));
    else tagScratch.set(ciphertext.subarray(len, total));

    if (EVP_DecryptInit_ex(decCtx, null, null, key, nonce) !== 1) fail('EVP_DecryptInit_ex');
    if (EVP_CIPHER_CTX_ctrl(decCtx, EVP_CTRL_AEAD_SET_TAG, CHACHA_TAG_LENGTH, tagScratch) !== 1) fail('SET_TAG');
    if (ad.byteLength > 0 && EVP_DecryptUpdate(decCtx, null, outLen, ad, ad.byteLength) !== 1) fail('AAD update');
    if (!isList(ciphertext)) {
      if (len > 0) decUpdate(out, ciphertext, len);
    } else {
      let off = 0;
      for (const buf of ciphertext) {
        if (off >= len) break;
        const n = Math.min(buf.byteLength, len - off);
        if (n === 0) continue;
        decUpdate(off === 0 ? out : out.subarray(off), buf, n); // passing n, not a subarray, avoids an allocation
        off += n;
      }
    }
    if (EVP_DecryptFinal_ex(decCtx, finalScratch, outLen) !== 1) {
      out.fill(0);
      throw new ChaChaAuthError();
    }
    return out;
  };

  const encryptTo = (dst: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array): Uint8Array => {
    checkKeyNonce(key, nonce);
    const len = plaintext.byteLength;
    if (dst.byteLength < len + CHACHA_TAG_LENGTH) throw new RangeError(`encryptTo: ${dst.byteLength} bytes for ${len + CHACHA_TAG_LENGTH}`);
    if (partialOverlap(dst, 0, plaintext, len)) throw new RangeError('encryptTo: output overlaps the plaintext');
    if (EVP_EncryptInit_ex(encCtx, null, null, key, nonce) !== 1) fail('EVP_EncryptInit_ex');
    if (ad.byteLength > 0 && EVP_EncryptUpdate(encCtx, null, outLen, ad, ad.byteLength) !== 1) fail('AAD update');
    if (len > 0) encUpdate(dst, plaintext, len);
    if (EVP_EncryptFinal_ex(encCtx, finalScratch, outLen) !== 1) fail('EVP_EncryptFinal_ex');
    if (EVP_CIPHER_CTX_ctrl(encCtx, EVP_CTRL_AEAD_GET_TAG, CHACHA_TAG_LENGTH, dst.subarray(len)) !== 1) fail('GET_TAG');
    return dst.subarray(0, len + CHACHA_TAG_LENGTH);
  };

  const version = s.OpenSSL_version(0)?.toString() ?? 'unknown';
  return { libraryPath, version, encrypt, decrypt, encryptTo };
}

// RFC 8439 §2.8.2 — run once at load so a libcrypto that loads but cannot do
// ChaCha20-Poly1305 correctly is rejected instead of corrupting traffic.
function selfTest(aead: OpenSslChaCha): void {
  const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
  const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
  const nonce = hex('070000004041424344454647');
  const ad = hex('50515253c0c1c2c3c4c5c6c7');
  const pt = new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  );
  const tag = '1ae10b594f09e26a7e902ecbd0600691';
  const ct = aead.encrypt(pt, nonce, ad, key);
  if (Buffer.from(ct.subarray(ct.byteLength - 16)).toString('hex') !== tag) throw new Error('self-test: tag mismatch');
  const back = aead.decrypt(ct, nonce, ad, key);
  if (!Buffer.from(back).equals(Buffer.from(pt))) throw new Error('self-test: round-trip mismatch');
  const bad = Uint8Array.from(ct);
  bad[0] = (bad[0] ?? 0) ^ 1;
  let rejected = false;
  try {
    aead.decrypt(bad, nonce, ad, key);
  } catch {
    rejected = true;
  }
  if (!rejected) throw new Error('self-test: forged ciphertext accepted');
}
