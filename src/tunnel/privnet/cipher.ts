/**
 * Picks the ChaCha20 keystream provider: system OpenSSL when it loads and
 * passes its self-test, otherwise @noble/ciphers (about 12x slower) with a
 * warning. Both produce the same keystream, so peers may differ.
 */
import { delimiter } from 'node:path';
import { defaultLibcryptoCandidates } from '../crypto/openssl-chacha.ts';
import type { KeystreamFactory, PrivnetCipherProvider } from './keystream.ts';
import { nobleKeystreamFactory } from './noble.ts';
import { tryLoadOpenSslKeystream } from './openssl.ts';
import { selfTest } from './self-test.ts';

export type PrivnetLog = (level: 'info' | 'warn', msg: string) => void;

export interface PrivnetCipherOptions {
  /** 'auto' (default): OpenSSL if usable, else noble with a warning. 'openssl' throws if unusable. */
  provider?: PrivnetCipherProvider | 'auto';
  /** dlopen() names / paths to try in order; defaults to EDGEMESH_LIBCRYPTO, then the noise layer's defaults. */
  libcryptoPaths?: readonly string[];
  /** Environment to read instead of process.env (tests). */
  env?: Record<string, string | undefined>;
  log?: PrivnetLog;
}

let nobleChecked = false;

function noble(): KeystreamFactory {
  if (!nobleChecked) {
    selfTest(nobleKeystreamFactory);
    nobleChecked = true;
  }
  return nobleKeystreamFactory;
}

/** Throws only when no provider is usable, or 'openssl' was required and is not. */
export function loadPrivnetCipher(opts: PrivnetCipherOptions = {}): KeystreamFactory {
  const emit = opts.log ?? (() => {});
  const want = opts.provider ?? 'auto';
  if (want === 'noble') {
    const f = noble();
    emit('info', `privnet: ChaCha20 via ${f.detail} (forced by configuration)`);
    return f;
  }
  const env = opts.env ?? process.env;
  const envPaths = env.EDGEMESH_LIBCRYPTO?.split(delimiter).map((p) => p.trim()).filter((p) => p !== '');
  const paths = opts.libcryptoPaths ?? (envPaths !== undefined && envPaths.length > 0 ? envPaths : defaultLibcryptoCandidates());
  const loaded = tryLoadOpenSslKeystream(paths);
  if (loaded.ok) {
    emit('info', `privnet: ChaCha20 via ${loaded.factory.detail}`);
    return loaded.factory;
  }
  if (want === 'openssl') throw new Error(`privnet: OpenSSL required but unavailable: ${loaded.error}`);
  const f = noble();
  emit('warn', `privnet: OpenSSL libcrypto unavailable, falling back to ${f.detail} (~12x slower): ${loaded.error}`);
  return f;
}
