/**
 * 64 MiB over ONE libp2p stream (tcp 127.0.0.1 + noise + yamux) in this Bun
 * process. With noise's default crypto this would kill the process with
 * ERR_CRYPTO_UNKNOWN_CIPHER on the first >= 1200-byte frame.
 */
import { describe, expect, test } from 'bun:test';
import { createNoiseCrypto, getCryptoProvider, tryLoadOpenSslChaCha } from '../../src/tunnel/crypto/index.ts';
import type { CryptoProvider } from '../../src/tunnel/crypto/index.ts';
import { bulkTransfer } from './transfer.ts';

const TOTAL = 64 * 1024 * 1024;
const CHUNK = 64 * 1024;

describe('libp2p end-to-end', () => {
  const providers: CryptoProvider[] = tryLoadOpenSslChaCha().ok ? ['openssl', 'wasm'] : ['wasm'];
  for (const provider of providers) {
    test(`${provider}: 64 MiB over one stream arrives complete and intact`, async () => {
      const { crypto } = createNoiseCrypto(undefined, { provider, env: {} });
      expect(getCryptoProvider(crypto)).toBe(provider);
      const r = await bulkTransfer(crypto, crypto, TOTAL, CHUNK);
      expect(r.receivedBytes).toBe(TOTAL);
      expect(r.receivedSha256).toBe(r.sentSha256);
      console.log(`[e2e] ${provider}: ${r.mbPerSec.toFixed(1)} MB/s over one stream (${r.seconds.toFixed(2)} s)`);
    });
  }

  test('mixed providers interoperate (openssl sender, wasm receiver and vice versa)', async () => {
    if (!tryLoadOpenSslChaCha().ok) return;
    const o = createNoiseCrypto(undefined, { provider: 'openssl', env: {} }).crypto;
    const w = createNoiseCrypto(undefined, { provider: 'wasm', env: {} }).crypto;
    for (const [a, b] of [[o, w], [w, o]] as const) {
      const r = await bulkTransfer(a, b, 4 * 1024 * 1024 + 12345, CHUNK);
      expect(r.receivedBytes).toBe(4 * 1024 * 1024 + 12345);
      expect(r.receivedSha256).toBe(r.sentSha256);
    }
  });
});
