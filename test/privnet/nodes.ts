/**
 * In-process libp2p nodes (tcp 127.0.0.1 + noise + yamux) with a selectable
 * connection protector, and a one-stream bulk transfer. Shared by the
 * privnet tests and scripts/bench-privnet.ts.
 */
import { createLibp2p } from 'libp2p';
import type { Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Stream } from '@libp2p/interface';
import { createNoiseCrypto } from '../../src/tunnel/crypto/index.ts';
import { privateNetwork } from './libp2p-pnet.ts';
import { createPrivateNetwork } from '../../src/tunnel/privnet/index.ts';
import type { PrivateNetworkOptions } from '../../src/tunnel/privnet/index.ts';

/** openssl / noble: privnet v1 with that cipher provider; v2: privnet v2 */
export type Protection = 'none' | 'pnet' | 'openssl' | 'noble' | 'v2';

export const SINK_PROTOCOL = '/edgemesh/test/privnet-sink/1.0.0';
/** Same, but counts without hashing (benchmarks time the transport, not sha256). */
export const COUNT_PROTOCOL = '/edgemesh/test/privnet-count/1.0.0';

export interface NodeOptions {
  protection: Protection;
  secret: Uint8Array;
  privnet?: PrivateNetworkOptions;
  /** libp2p's inbound upgrade deadline (default 10 s). */
  inboundUpgradeTimeout?: number;
}

export function protectorFor(o: NodeOptions): unknown {
  switch (o.protection) {
    case 'none':
      return undefined;
    case 'pnet':
      return privateNetwork(o.secret);
    case 'openssl':
    case 'noble':
      return createPrivateNetwork(o.secret, { ...o.privnet, version: 1, provider: o.protection });
    case 'v2':
      return createPrivateNetwork(o.secret, { ...o.privnet, version: 2 });
  }
}

export async function makeNode(o: NodeOptions): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto: createNoiseCrypto().crypto })],
    streamMuxers: [yamux()],
    connectionProtector: protectorFor(o) as never,
    connectionManager: o.inboundUpgradeTimeout === undefined ? {} : { inboundUpgradeTimeout: o.inboundUpgradeTimeout },
  });
  await node.handle(SINK_PROTOCOL, sinkHandler(true));
  await node.handle(COUNT_PROTOCOL, sinkHandler(false));
  return node;
}

export function loopbackAddr(node: Libp2p): Multiaddr {
  const addr = node.getMultiaddrs().find((a) => a.toString().startsWith('/ip4/127.0.0.1/'));
  if (addr === undefined) throw new Error('node has no 127.0.0.1 listen address');
  return addr;
}

export function tcpPort(node: Libp2p): number {
  const m = /\/tcp\/(\d+)/.exec(loopbackAddr(node).toString());
  if (m === null) throw new Error('no tcp port');
  return Number(m[1]);
}

/** Counts and hashes everything until the remote closes its write side, then replies "<bytes> <sha256>". */
const sinkHandler = (verify: boolean) => (stream: Stream): void => {
  void (async () => {
    const hash = new Bun.CryptoHasher('sha256');
    let count = 0;
    try {
      for await (const chunk of stream) {
        for (const buf of chunk instanceof Uint8Array ? [chunk] : chunk) {
          if (verify) hash.update(buf);
          count += buf.byteLength;
        }
      }
      stream.send(new TextEncoder().encode(`${count} ${verify ? hash.digest('hex') : '-'}`));
      await stream.close();
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  })();
};

export interface TransferResult {
  receivedBytes: number;
  receivedSha256: string;
  sentSha256: string;
  seconds: number;
  mbPerSec: number;
}

/**
 * Sends `totalBytes` over ONE new stream to `addr`'s sink in `chunkBytes`
 * writes. Chunks are views into a random pool at shifting offsets (so loss
 * or reordering changes the hash) and are never mutated after send().
 */
export async function sendOverOneStream(
  sender: Libp2p,
  addr: Multiaddr,
  totalBytes: number,
  chunkBytes = 64 * 1024,
  /** false: no sha256 on either side (benchmarks). */
  verify = true,
): Promise<TransferResult> {
  const pool = new Uint8Array(4 * 1024 * 1024 + chunkBytes);
  for (let i = 0; i < pool.length; i += 65536) crypto.getRandomValues(pool.subarray(i, Math.min(i + 65536, pool.length)));

  const stream = await sender.dialProtocol(addr, verify ? SINK_PROTOCOL : COUNT_PROTOCOL);
  const sent = new Bun.CryptoHasher('sha256');
  const start = performance.now();
  let written = 0;
  for (let i = 0; written < totalBytes; i++) {
    const n = Math.min(chunkBytes, totalBytes - written);
    const off = (i * 40_009) % (pool.length - chunkBytes);
    const chunk = pool.subarray(off, off + n);
    if (verify) sent.update(chunk);
    written += n;
    if (!stream.send(chunk)) await stream.onDrain();
  }
  await stream.close();

  let reply = '';
  const dec = new TextDecoder();
  for await (const chunk of stream) reply += dec.decode(chunk instanceof Uint8Array ? chunk : chunk.subarray(), { stream: true });
  const seconds = (performance.now() - start) / 1000;
  const [countStr, receivedSha256 = ''] = reply.trim().split(' ');
  const receivedBytes = Number(countStr);
  return { receivedBytes, receivedSha256, sentSha256: verify ? sent.digest('hex') : '-', seconds, mbPerSec: receivedBytes / seconds / 1e6 };
}
