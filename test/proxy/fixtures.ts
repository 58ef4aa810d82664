/**
 * Two in-process libp2p nodes on 127.0.0.1 (tcp + noise + yamux): B serves
 * `/edgemesh/proxy/1.0.0`, A opens streams to it. Plus small loopback
 * servers and clients used by the integration tests. Everything here is
 * bounded by timeouts so a bug fails a test instead of hanging `bun test`.
 */
import { createServer, connect } from 'node:net';
import type { EarlyBytes } from '../../src/model/tunnel.ts';
import { acceptDirectly, type DirectAcceptStats } from '../../src/tunnel/proxy/direct-accept.ts';
import type { AddressInfo, Server, Socket } from 'node:net';
import { createLibp2p } from 'libp2p';
import type { Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Stream } from '@libp2p/interface';
import { createNoiseCrypto } from '../../src/tunnel/crypto/index.ts';
import { createLogger } from '../../src/log.ts';
import { PROXY_HANDLER_OPTIONS, PROXY_PROTOCOL, ProxyServer } from '../../src/tunnel/proxy/server.ts';
import type { ProxyServerContext, SessionSummary } from '../../src/tunnel/proxy/server.ts';
import { proxyTcp } from '../../src/tunnel/proxy/client.ts';
import { ClientPrefix } from '../../src/agent/traffic/client-prefix.ts';
import { openProxy } from '../../src/agent/tunnel/proxy.ts';
import type { ProxyChannel } from '../../src/tunnel/proxy/client.ts';
import type { ProxyRequest } from '../../src/tunnel/proxy/header.ts';

const noiseCrypto = createNoiseCrypto(undefined, { env: {} }).crypto;

async function node(): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    streamMuxers: [yamux()],
  });
}

export interface Pair {
  a: Libp2p;
  b: Libp2p;
  bAddr: Multiaddr;
  server: ProxyServer;
  logs: string[];
  sessions: SessionSummary[];
  /** B's inbound proxy streams: taken directly, or through libp2p's negotiation */
  accepted: DirectAcceptStats;
  /** Raw stream A → B on the proxy protocol (no header sent). */
  rawStream(): Promise<Stream>;
  /** Stream A → B with the header exchanged. */
  open(header: Omit<ProxyRequest, 'fromNode'> & { fromNode?: string }, early?: EarlyBytes): Promise<ProxyChannel>;
  stop(): Promise<void>;
}

export async function startPair(ctx: Partial<ProxyServerContext> = {}, opts: { directAccept?: boolean } = {}): Promise<Pair> {
  const [a, b] = await Promise.all([node(), node()]);
  const logs: string[] = [];
  const sessions: SessionSummary[] = [];
  const log = createLogger('proxy', 'debug', { write: (l) => void logs.push(l) });
  const aId = a.peerId.toString();
  const server = new ProxyServer({
    log,
    authorize: (peer, fromNode) => peer === aId && fromNode === 'edge1',
    ...ctx,
    metrics: { onSessionEnd: (_req, _peer, s) => void sessions.push(s), ...ctx.metrics },
  });
  await b.handle(PROXY_PROTOCOL, server.handler, PROXY_HANDLER_OPTIONS);
  const accepted: DirectAcceptStats = { direct: 0, stock: 0 };
  // as the agent does (agent/tunnel/proxy.ts)
  if (opts.directAccept !== false) b.addEventListener('connection:open', (e) => void acceptDirectly(e.detail, PROXY_PROTOCOL, server.handler, accepted, server.withFirstBytes));
  await a.handle(PROXY_PROTOCOL, () => {}, PROXY_HANDLER_OPTIONS); // sets A's outbound stream limit
  const bAddr = b.getMultiaddrs().find((m) => m.toString().startsWith('/ip4/127.0.0.1/'));
  if (!bAddr) throw new Error('B has no loopback address');
  const rawStream = () => a.dialProtocol(bAddr, PROXY_PROTOCOL, { runOnLimitedConnection: true });
  return {
    a,
    b,
    bAddr,
    server,
    logs,
    sessions,
    accepted,
    rawStream,
    // as the agent opens them: protocol selected optimistically with the request
    open: async (h, early) => openProxy(await a.dial(bAddr), { fromNode: 'edge1', ...h }, 5_000, early),
    stop: async () => {
      server.closeAll();
      await Promise.all([a.stop(), b.stop()]);
    },
  };
}

/** Listens on 127.0.0.1:0; every accepted socket is passed to `onSocket`. */
export async function listen(onSocket: (s: Socket) => void, allowHalfOpen = true): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** TCP echo, with orderly half-close: EOF from the client ends our side after the echo. */
export function echoServer() {
  return listen((s) => {
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
}

/**
 * The app side of A: a loopback listener whose connections are carried to
 * `target` through a proxy stream A → B (what the agent's proxier does).
 */
export function frontDoor(pair: Pair, target: { host: string; port: number }, opts: { flowing?: boolean } = {}) {
  return listen((s) => {
    // flowing: as the agent's traffic module, the client is read from accept on (ClientPrefix)
    const prefix = opts.flowing ? new ClientPrefix(s) : undefined;
    if (!prefix) s.pause();
    pair
      .open({ protocol: 'tcp', ...target }, prefix)
      .then((ch) => proxyTcp(s, ch, { toStream: prefix?.release() }))
      .catch(() => s.destroy());
  });
}

export function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

export interface Outcome {
  data: Buffer;
  /** 'end' was seen (orderly EOF) before close. */
  ended: boolean;
  error?: NodeJS.ErrnoException;
}

/**
 * Collects everything a socket receives until it closes (or `timeoutMs`, which
 * rejects). With `endOnEof` the socket answers the peer's EOF with its own, as
 * most applications do; a half-open socket otherwise never learns that the
 * peer has gone away until it writes.
 */
export function collect(s: Socket, timeoutMs = 10_000, endOnEof = false): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    let error: NodeJS.ErrnoException | undefined;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`socket did not close within ${timeoutMs} ms (got ${Buffer.concat(chunks).length} bytes)`));
    }, timeoutMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      ended = true;
      if (endOnEof) s.end();
    });
    s.on('error', (e) => (error = e));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(error ? { data: Buffer.concat(chunks), ended, error } : { data: Buffer.concat(chunks), ended });
    });
  });
}

/** Writes all of `data` honouring backpressure. */
export async function writeAll(s: Socket, data: Uint8Array, chunk = 64 * 1024): Promise<void> {
  for (let i = 0; i < data.byteLength; i += chunk) {
    if (!s.write(data.subarray(i, i + chunk))) await new Promise((r) => s.once('drain', r));
  }
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(i + 65536, n)));
  return out;
}

export function sha256(data: Uint8Array): string {
  return new Bun.CryptoHasher('sha256').update(data).digest('hex');
}

/** A free port that refuses connections (bound, then released). */
export async function closedPort(): Promise<number> {
  const l = await listen(() => {});
  await l.close();
  return l.port;
}

export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** Reads the first chunk(s) of a raw stream until it closes; returns bytes and the close error, if any. */
export function drainStream(stream: Stream, timeoutMs = 5_000): Promise<{ data: Uint8Array; error?: Error }> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    const timer = setTimeout(() => reject(new Error('stream did not close in time')), timeoutMs);
    stream.addEventListener('message', (evt) => parts.push(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()));
    stream.addEventListener('close', (evt) => {
      clearTimeout(timer);
      const data = Buffer.concat(parts);
      resolve(evt.error ? { data, error: evt.error } : { data });
    });
    // Close our side once the remote is done, so an orderly close completes.
    stream.addEventListener('remoteCloseWrite', () => void stream.close().catch(() => {}));
  });
}
