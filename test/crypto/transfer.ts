/**
 * Two in-process libp2p nodes (tcp on 127.0.0.1 + noise + yamux) and a
 * one-stream bulk transfer. Shared by the e2e test and scripts/bench-crypto.ts.
 */
import { createLibp2p } from 'libp2p';
import type { Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Stream } from '@libp2p/interface';

export const SINK_PROTOCOL = '/edgemesh/test/crypto-sink/1.0.0';

export interface TransferResult {
  /** Bytes the receiver counted. */
  receivedBytes: number;
  /** sha256 (hex) the receiver computed over what it got. */
  receivedSha256: string;
  /** sha256 (hex) of what the sender wrote. */
  sentSha256: string;
  /** Wall time from first send to receiving the receiver's summary. */
  seconds: number;
  /** receivedBytes / seconds / 1e6 */
  mbPerSec: number;
}

async function node(crypto: ICryptoInterface): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto })],
    streamMuxers: [yamux()],
  });
}

function sha256Hex(h: Bun.CryptoHasher): string {
  return h.digest('hex');
}

/** Receiver: count (+ hash) everything until the remote closes its write side, then reply "<bytes> <sha256>". */
const sinkHandler = (verify: boolean) => (stream: Stream): void => {
  void (async () => {
    const hash = new Bun.CryptoHasher('sha256');
    let count = 0;
    try {
      for await (const chunk of stream) {
        if (chunk instanceof Uint8Array) {
          if (verify) hash.update(chunk);
          count += chunk.byteLength;
        } else {
          for (const buf of chunk) {
            if (verify) hash.update(buf);
            count += buf.byteLength;
          }
        }
      }
      stream.send(new TextEncoder().encode(`${count} ${verify ? sha256Hex(hash) : '-'}`));
      await stream.close();
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  })();
};

/**
 * Sends `totalBytes` over ONE stream in `chunkBytes` writes. Chunks are views
 * into an immutable random pool at varying offsets (so reordering or loss
 * changes the hash) and are never mutated after send(), because the muxer
 * may keep references until the socket drains.
 */
export async function bulkTransfer(
  senderCrypto: ICryptoInterface,
  receiverCrypto: ICryptoInterface,
  totalBytes: number,
  chunkBytes = 64 * 1024,
  /** false skips both sha256 passes so only the transport is timed (bench). */
  verify = true,
): Promise<TransferResult> {
  const receiver = await node(receiverCrypto);
  const sender = await node(senderCrypto);
  try {
    await receiver.handle(SINK_PROTOCOL, sinkHandler(verify));
    const addr = receiver.getMultiaddrs().find((a) => a.toString().startsWith('/ip4/127.0.0.1/'));
    if (addr === undefined) throw new Error('receiver has no 127.0.0.1 listen address');

    const pool = new Uint8Array(4 * 1024 * 1024 + chunkBytes);
    for (let i = 0; i < pool.length; i += 65536) crypto.getRandomValues(pool.subarray(i, Math.min(i + 65536, pool.length)));

    const stream = await sender.dialProtocol(addr, SINK_PROTOCOL);
    const sent = new Bun.CryptoHasher('sha256');
    const start = performance.now();
    let written = 0;
    let i = 0;
    while (written < totalBytes) {
      const n = Math.min(chunkBytes, totalBytes - written);
      const off = (i * 40_009) % (pool.length - chunkBytes);
      const chunk = pool.subarray(off, off + n);
      if (verify) sent.update(chunk);
      written += n;
      i++;
      if (!stream.send(chunk)) await stream.onDrain();
    }
    await stream.close();

    let reply = '';
    const dec = new TextDecoder();
    for await (const chunk of stream) reply += dec.decode(chunk instanceof Uint8Array ? chunk : chunk.subarray(), { stream: true });
    const seconds = (performance.now() - start) / 1000;

    const [countStr, receivedSha256 = ''] = reply.trim().split(' ');
    const receivedBytes = Number(countStr);
    return {
      receivedBytes,
      receivedSha256,
      sentSha256: verify ? sha256Hex(sent) : '-',
      seconds,
      mbPerSec: receivedBytes / seconds / 1e6,
    };
  } finally {
    await sender.stop();
    await receiver.stop();
  }
}
