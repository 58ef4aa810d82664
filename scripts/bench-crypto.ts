/**
 * Noise crypto throughput under Bun: raw ChaCha20-Poly1305 (encrypt+decrypt
 * of 64 KiB frames) and one-stream libp2p transfer (tcp 127.0.0.1 + noise +
 * yamux, both nodes in this process) for each available provider.
 *
 *   ./node_modules/.bin/bun scripts/bench-crypto.ts [MiB per transfer, default 64]
 */
import { pureJsCrypto } from '@chainsafe/libp2p-noise';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { createNoiseCrypto } from '../src/tunnel/crypto/index.ts';
import type { NoiseCrypto } from '../src/tunnel/crypto/index.ts';
import { bulkTransfer } from '../test/crypto/transfer.ts';

const mib = Number(process.argv[2] ?? 64);

function aeadMBps(c: ICryptoInterface, frame: number, seconds = 1.5): number {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const nonce = new Uint8Array(12);
  const ad = new Uint8Array(0);
  const pt = new Uint8Array(frame);
  for (let i = 0; i < frame; i += 65536) crypto.getRandomValues(pt.subarray(i, Math.min(i + 65536, frame)));
  // warm up JIT / wasm before timing
  for (let i = 0; i < 20; i++) c.chaCha20Poly1305Decrypt(c.chaCha20Poly1305Encrypt(pt, nonce, ad, key), nonce, ad, key);
  let bytes = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const ct = c.chaCha20Poly1305Encrypt(pt, nonce, ad, key);
    c.chaCha20Poly1305Decrypt(ct, nonce, ad, key);
    bytes += frame;
  }
  return bytes / ((performance.now() - start) / 1000) / 1e6;
}

// Honours EDGEMESH_LIBCRYPTO, so a specific libcrypto can be benchmarked.
const log = (l: string, m: string): void => console.log(`[${l}] ${m}`);
const built: NoiseCrypto[] = [];
try {
  built.push(createNoiseCrypto(log, { provider: 'openssl' }));
} catch (err) {
  log('warn', `openssl provider unavailable: ${String(err)}`);
}
built.push(createNoiseCrypto(log, { provider: 'wasm' }));

console.log(`\nChaCha20-Poly1305 encrypt+decrypt (MB/s of plaintext through both):`);
console.log('provider'.padEnd(22) + '64 KiB'.padStart(10) + '1 KiB'.padStart(10));
for (const c of built) {
  console.log(c.provider.padEnd(22) + aeadMBps(c.crypto, 65536).toFixed(1).padStart(10) + aeadMBps(c.crypto, 1024).toFixed(1).padStart(10));
}
console.log('pure-js (noble, ref)'.padEnd(22) + aeadMBps(pureJsCrypto, 65536).toFixed(1).padStart(10) + aeadMBps(pureJsCrypto, 1024).toFixed(1).padStart(10));

console.log(`\nlibp2p one stream, ${mib} MiB in 64 KiB writes (both nodes in this process; best of 2):`);
for (const c of built) {
  for (const verify of [true, false]) {
    let best = 0;
    for (let run = 0; run < 2; run++) {
      const r = await bulkTransfer(c.crypto, c.crypto, mib * 1024 * 1024, 64 * 1024, verify);
      if (r.receivedBytes !== mib * 1024 * 1024 || r.receivedSha256 !== r.sentSha256) throw new Error(`transfer corrupted: ${JSON.stringify(r)}`);
      best = Math.max(best, r.mbPerSec);
    }
    console.log(`${c.provider.padEnd(10)} ${verify ? 'with sha256 check ' : 'no sha256 check   '} ${best.toFixed(1).padStart(8)} MB/s`);
  }
}
