/**
 * SOCKS5 front door: CONNECT only; no authentication, or a username and
 * password (RFC 1929) when configured; at most `maxConnections` clients. Each accepted request
 * is handed to `route`, which decides where it goes (typically a proxy stream
 * to another node's agent); the SOCKS reply is sent only once that stream is
 * open, then the client socket is piped to it with pipe.ts.
 */
import { createServer } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { ByteSocket } from '../../net/byte-socket.ts';
import type { Stream } from '@libp2p/interface';
import { concat, copy, EMPTY } from '../proxy/bytes.ts';
import type { ProxyChannel } from '../proxy/client.ts';
import { pipeSocketStream, resetSocket } from '../proxy/pipe.ts';
import { pipeSockets } from '../proxy/socket-pipe.ts';
import type { ByteDirection } from '../proxy/pipe.ts';
import type { ProxyLog } from '../proxy/server.ts';
import {
  COMMAND,
  METHOD,
  REPLY,
  buildMethodSelection,
  buildReply,
  buildUserPassStatus,
  parseUserPass,
  parseGreeting,
  parseRequest,
  replyCodeFor,
  selectMethod,
} from './protocol.ts';
import type { Socks5Target } from './protocol.ts';

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_OPEN_TIMEOUT_MS = 20_000;
/** After an error reply we half-close; a client that never closes is dropped after this. */
const LINGER_MS = 2_000;

export type Socks5Route =
  | { kind: 'stream'; open: () => Promise<Stream | ProxyChannel> }
  /** a connected TCP socket (a backend dialled directly) */
  | { kind: 'socket'; open: () => Promise<ByteSocket> }
  | { kind: 'error'; reply: number; reason: string };

export interface Socks5Options {
  host: string;
  /** 0 picks a free port (see the returned `port`). */
  port: number;
  log: ProxyLog;
  route: (target: Socks5Target) => Promise<Socks5Route>;
  handshakeTimeoutMs?: number;
  /** Bound on route() + open() together. */
  openTimeoutMs?: number;
  /** Live byte counts: 'in' = tunnel → client, 'out' = client → tunnel. */
  onBytes?: (direction: ByteDirection, bytes: number) => void;
  /** Require this username and password (RFC 1929); clients offering only "no authentication" are refused. */
  credentials?: { username: Uint8Array; password: Uint8Array };
  /** Clients at once; one more is closed at accept and counted (default 256). */
  maxConnections?: number;
  /** A client closed because `maxConnections` were open, or refused for wrong credentials. */
  onRefused?: (why: 'capacity' | 'credentials') => void;
}

export const DEFAULT_MAX_CONNECTIONS = 256;

export interface Socks5Server {
  host: string;
  port: number;
  /** Client connections currently open. */
  readonly connections: number;
  /** Stops listening and resets every client connection. */
  stop(): Promise<void>;
}

export async function startSocks5(opts: Socks5Options): Promise<Socks5Server> {
  const sockets = new Set<Socket>();
  const max = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  let lastCapWarn = 0;
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    if (sockets.size >= max) {
      // a bounded table: past the cap a client costs nothing but this reset
      opts.onRefused?.('capacity');
      if (Date.now() - lastCapWarn > 10_000) {
        lastCapWarn = Date.now();
        opts.log.warn('socks5: connection cap reached, refusing clients', { maxConnections: max });
      }
      socket.on('error', () => {});
      resetSocket(socket);
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {}); // reported where it matters; must never crash the agent
    serveClient(socket, opts).catch((err) => {
      opts.log.error('socks5: client handler failed', { error: err });
      resetSocket(socket);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => opts.log.error('socks5: listener error', { error: err }));
  const addr = server.address() as AddressInfo;
  return {
    host: addr.address,
    port: addr.port,
    get connections() {
      return sockets.size;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) resetSocket(s);
      }),
  };
}

interface Handshake {
  command: number;
  target: Socks5Target;
  /** Bytes the client sent after its request (optimistic data). */
  rest: Uint8Array;
}

async function serveClient(socket: Socket, opts: Socks5Options): Promise<void> {
  const { log } = opts;
  const client = `${socket.remoteAddress}:${socket.remotePort}`;
  socket.setNoDelay(true);
  const hs = await handshake(socket, opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, log, client, opts);
  if (!hs) return;
  const { target } = hs;
  const dest = `${target.host}:${target.port}`;
  if (hs.command !== COMMAND.CONNECT) {
    log.debug('socks5: unsupported command', { client, command: hs.command, target: dest });
    return refuse(socket, REPLY.COMMAND_NOT_SUPPORTED);
  }

  let gone = false;
  const onGone = (): void => {
    gone = true;
  };
  socket.once('close', onGone);
  let opened: Opened;
  try {
    opened = await withTimeout(
      connectTarget(target, opts),
      opts.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS,
      () => `timed out opening a stream to ${dest} (ETIMEDOUT)`,
      (late) => (late.kind === 'socket' ? late.socket.destroy() : late.channel.stream.abort(new Error('opened after the SOCKS request timed out'))),
    );
  } catch (err) {
    const failure = err instanceof RouteRefusal ? err : { reply: replyCodeFor((err as Error).message), message: (err as Error).message };
    log.info('socks5: connect failed', { client, target: dest, reply: failure.reply, reason: failure.message });
    return refuse(socket, failure.reply);
  } finally {
    socket.off('close', onGone);
  }
  if (gone || socket.destroyed) {
    if (opened.kind === 'socket') opened.socket.destroy();
    else opened.channel.stream.abort(new Error('SOCKS client went away'));
    return;
  }

  socket.write(buildReply(REPLY.SUCCEEDED, { host: socket.localAddress ?? '0.0.0.0', port: socket.localPort ?? 0 }));
  log.debug('socks5: connected', { client, target: dest });
  if (opened.kind === 'socket') {
    if (hs.rest.length) opened.socket.write(hs.rest);
    const r = await pipeSockets(socket, opened.socket);
    log.debug('socks5: closed', { client, target: dest, bytesIn: r.bytesDown, bytesOut: r.bytesUp });
    return;
  }
  const channel = opened.channel;
  const r = await pipeSocketStream(socket, channel.stream, { toSocket: channel.initial, toStream: hs.rest, onBytes: opts.onBytes });
  log.debug('socks5: closed', { client, target: dest, bytesIn: r.bytesIn, bytesOut: r.bytesOut, error: r.error?.message });
}

class RouteRefusal extends Error {
  constructor(
    readonly reply: number,
    message: string,
  ) {
    super(message);
  }
}

type Opened = { kind: 'stream'; channel: ProxyChannel } | { kind: 'socket'; socket: ByteSocket };

async function connectTarget(target: Socks5Target, opts: Socks5Options): Promise<Opened> {
  const route = await opts.route(target);
  if (route.kind === 'error') throw new RouteRefusal(route.reply, route.reason);
  if (route.kind === 'socket') return { kind: 'socket', socket: await route.open() };
  const opened = await route.open();
  return { kind: 'stream', channel: 'initial' in opened && 'stream' in opened ? opened : { stream: opened as Stream, initial: EMPTY } };
}

/**
 * Reads greeting and request (a client may send both at once), answering the
 * method selection in between. Resolves undefined when the connection was
 * refused or closed; the socket is left paused so no payload is lost.
 */
function handshake(socket: Socket, timeoutMs: number, log: ProxyLog, client: string, opts: Socks5Options): Promise<Handshake | undefined> {
  const creds = opts.credentials;
  return new Promise((resolve) => {
    let buf: Uint8Array = EMPTY;
    let phase: 'greeting' | 'auth' | 'request' = 'greeting';
    const finish = (hs: Handshake | undefined): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('end', onEnd);
      resolve(hs);
    };
    const fail = (reason: string, reply?: number): void => {
      log.debug('socks5: handshake failed', { client, reason });
      if (reply === undefined) socket.destroy();
      else refuse(socket, reply);
      finish(undefined);
    };
    const onData = (chunk: Buffer): void => {
      buf = concat(buf, chunk);
      if (phase === 'greeting') {
        const g = parseGreeting(buf);
        if (g.kind === 'incomplete') return;
        if (g.kind === 'error') return fail(g.reason);
        const method = selectMethod(g.methods, creds !== undefined);
        if (method === METHOD.NO_ACCEPTABLE) {
          log.debug('socks5: handshake failed', { client, reason: `no acceptable authentication method in [${g.methods.join(', ')}]` });
          endAndLinger(socket, buildMethodSelection(method));
          return finish(undefined);
        }
        socket.write(buildMethodSelection(method));
        buf = buf.subarray(g.consumed);
        phase = creds ? 'auth' : 'request';
      }
      if (phase === 'auth' && creds) {
        const a = parseUserPass(buf);
        if (a.kind === 'incomplete') return;
        if (a.kind === 'error') return fail(a.reason);
        if (!same(a.username, creds.username) || !same(a.password, creds.password)) {
          log.info('socks5: wrong username or password', { client });
          opts.onRefused?.('credentials');
          endAndLinger(socket, buildUserPassStatus(false));
          return finish(undefined);
        }
        socket.write(buildUserPassStatus(true));
        buf = buf.subarray(a.consumed);
        phase = 'request';
      }
      const r = parseRequest(buf);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') return fail(r.reason, r.reply);
      socket.pause(); // hold payload until the pipe is attached
      finish({ command: r.command, target: r.target, rest: copy(buf.subarray(r.consumed)) });
    };
    const onClose = (): void => finish(undefined);
    // half-open sockets are allowed for the pipe, but a client that ends
    // before its request is gone: free its slot now, not at the timeout
    const onEnd = (): void => fail('client closed before its request');
    const timer = setTimeout(() => fail(`no complete request within ${timeoutMs} ms`), timeoutMs);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.once('end', onEnd);
  });
}

/** compares digests in constant time: a refusal's timing says nothing about the secret, its length included */
function same(a: Uint8Array, b: Uint8Array): boolean {
  const digest = (x: Uint8Array) => createHash('sha256').update(x).digest();
  return timingSafeEqual(digest(a), digest(b));
}

function refuse(socket: Socket, reply: number): void {
  endAndLinger(socket, buildReply(reply));
}

function endAndLinger(socket: Socket, last: Uint8Array): void {
  if (socket.destroyed) return;
  socket.end(last);
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** `discardLate` disposes of a result that arrives after the timeout fired. */
function withTimeout<T>(p: Promise<T>, ms: number, message: () => string, discardLate: (v: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(new Error(message()));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        if (timedOut) discardLate(v);
        else resolve(v);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
