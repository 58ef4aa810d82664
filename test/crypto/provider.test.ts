import { describe, expect, test } from 'bun:test';
import { resolve } from 'node:path';
import { createNoiseCrypto, defaultLibcryptoCandidates, tryLoadOpenSslChaCha } from '../../src/tunnel/crypto/index.ts';
import type { CryptoLog } from '../../src/tunnel/crypto/index.ts';
import { RFC8439, toHex } from './aead-suite.ts';

function recorder(): { log: CryptoLog; lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = [];
  return { log: (level, msg) => lines.push([level, msg]), lines };
}

const vectorOk = (c: ReturnType<typeof createNoiseCrypto>): boolean =>
  toHex(c.crypto.chaCha20Poly1305Encrypt(RFC8439.plaintext, RFC8439.nonce, RFC8439.ad, RFC8439.key)) ===
  toHex(RFC8439.ciphertext) + toHex(RFC8439.tag);

describe('provider selection', () => {
  test('auto uses OpenSSL when libcrypto loads', () => {
    if (!tryLoadOpenSslChaCha().ok) return; // host without libcrypto: covered by the fallback tests
    const r = recorder();
    const c = createNoiseCrypto(r.log, { env: {} });
    expect(c.provider).toBe('openssl');
    expect(c.detail).toContain('OpenSSL');
    expect(r.lines.some(([l, m]) => l === 'info' && m.includes('OpenSSL'))).toBe(true);
    expect(r.lines.some(([l]) => l === 'warn')).toBe(false);
  });

  test('falls back to wasm with a warning when libcrypto cannot load (EDGEMESH_LIBCRYPTO=/nonexistent)', () => {
    const r = recorder();
    const c = createNoiseCrypto(r.log, { env: { EDGEMESH_LIBCRYPTO: '/nonexistent/libcrypto.so.3' } });
    expect(c.provider).toBe('wasm');
    const warns = r.lines.filter(([l]) => l === 'warn').map(([, m]) => m);
    expect(warns.length).toBe(1);
    expect(warns[0]).toContain('falling back to wasm');
    expect(warns[0]).toContain('/nonexistent/libcrypto.so.3');
    expect(vectorOk(c)).toBe(true);
  });

  test('libcryptoPaths option overrides the environment', () => {
    const r = recorder();
    const c = createNoiseCrypto(r.log, { libcryptoPaths: ['/nonexistent.so'], env: { EDGEMESH_LIBCRYPTO: 'libcrypto.so.3' } });
    expect(c.provider).toBe('wasm');
    expect(r.lines.filter(([l]) => l === 'warn').length).toBe(1);
  });

  test('a library that loads but lacks the EVP symbols is skipped', () => {
    if (!tryLoadOpenSslChaCha().ok) return;
    const c = createNoiseCrypto(undefined, { libcryptoPaths: ['/nonexistent.so', 'libc.so.6', ...defaultLibcryptoCandidates()] });
    expect(c.provider).toBe('openssl');
    expect(c.detail).not.toContain('libc.so.6');
  });

  test('EDGEMESH_CRYPTO=wasm forces the fallback without a warning', () => {
    const r = recorder();
    const c = createNoiseCrypto(r.log, { env: { EDGEMESH_CRYPTO: 'wasm' } });
    expect(c.provider).toBe('wasm');
    expect(r.lines.some(([l]) => l === 'warn')).toBe(false);
    expect(r.lines.some(([l, m]) => l === 'info' && m.includes('forced'))).toBe(true);
    expect(vectorOk(c)).toBe(true);
  });

  test('EDGEMESH_CRYPTO=openssl throws when libcrypto is unusable instead of silently degrading', () => {
    expect(() =>
      createNoiseCrypto(undefined, { env: { EDGEMESH_CRYPTO: 'openssl', EDGEMESH_LIBCRYPTO: '/nonexistent' } }),
    ).toThrow(/OpenSSL required/);
  });

  test('unknown EDGEMESH_CRYPTO value warns and behaves like auto', () => {
    const r = recorder();
    const c = createNoiseCrypto(r.log, { env: { EDGEMESH_CRYPTO: 'fastest', EDGEMESH_LIBCRYPTO: '/nonexistent' } });
    expect(c.provider).toBe('wasm');
    expect(r.lines.some(([l, m]) => l === 'warn' && m.includes('EDGEMESH_CRYPTO'))).toBe(true);
  });

  test('reads the real process environment (child process)', async () => {
    const mod = resolve(import.meta.dir, '../../src/tunnel/crypto/index.ts');
    const script = `const { createNoiseCrypto } = await import(${JSON.stringify(mod)});
      const c = createNoiseCrypto((l, m) => console.log(l + ': ' + m));
      console.log('provider=' + c.provider);`;
    const run = async (env: Record<string, string>): Promise<string> => {
      const p = Bun.spawn([process.execPath, '-e', script], {
        env: { ...process.env, EDGEMESH_CRYPTO: '', EDGEMESH_LIBCRYPTO: '', ...env },
        stdout: 'pipe',
        stderr: 'pipe',
      });
      const out = await new Response(p.stdout).text();
      expect(await p.exited).toBe(0);
      return out;
    };
    const forced = await run({ EDGEMESH_CRYPTO: 'wasm' });
    expect(forced).toContain('provider=wasm');
    const missing = await run({ EDGEMESH_LIBCRYPTO: '/nonexistent' });
    expect(missing).toContain('provider=wasm');
    expect(missing).toContain('warn: noise crypto: OpenSSL libcrypto unavailable');
  });
});
