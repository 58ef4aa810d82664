/**
 * Receiving side of `/edgemesh/proxy/1.0.0`: read and check the request,
 * authorize the opener, dial the target, answer, then carry the bytes
 * (TCP: pipe.ts; UDP: one connected dgram socket per stream via UdpSession).
 * Every failure ends in a reply (when the stream can still carry one), one
 * log line, and a closed stream; nothing here throws into libp2p.
 */
import type { ByteSocket as Socket } from '../../net/byte-socket.ts';
import type { Socket as UdpSocket } from 'node:dgram';
import type { Connection, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface';
import type { Logger } from '../../log.ts';
import { copy, EMPTY } from './bytes.ts';
import { dialTcp as defaultDialTcp, openUdp as defaultOpenUdp, formatHostPort } from './dial.ts';
import type { Target } from './dial.ts';
import { encodeReply, requestDecoder } from './header.ts';
import type { ProxyRequest, ProxyTransport } from './header.ts';
import { pipeSocketStream } from './pipe.ts';
import type { ByteDirection } from './pipe.ts';
import { readHeader } from './read-header.ts';
import { withHeldAcks } from './held-acks.ts';
import { UdpSession } from './udp-session.ts';

export const PROXY_PROTOCOL = '/edgemesh/proxy/1.0.0';

/**
 * Options for `node.handle(PROXY_PROTOCOL, ...)`. libp2p's defaults (32 inbound
 * / 64 outbound streams per protocol per connection) are far too low for a
 * proxy: a browser alone opens dozens of connections, and one agent pair must
 * carry 10,000 concurrent connections (as yamux's own cap, see tunnel/node.ts). The outbound limit of
 * the local registration also governs our own dialProtocol calls.
 */
export const PROXY_HANDLER_OPTIONS = {
  runOnLimitedConnection: true,
  maxInboundStreams: 65_536,
  maxOutboundStreams: 65_536,
} as const satisfies StreamHandlerOptions;

export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_UDP_IDLE_TIMEOUT_MS = 60_000;
/** How long a refused stream waits for the opener to close before it is reset. */
export const REFUSE_GRACE_MS = 2_000;

export type ProxyLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
export type RejectReason = 'header' | 'unauthorized' | 'forbidden' | 'busy' | 'dial';

export interface SessionSummary {
  /** Opener → target bytes (TCP) or datagram payload bytes (UDP). */
  bytesIn: number;
  /** Target → opener. */
  bytesOut: number;
  durationMs: number;
  /** Set when the session ended by a reset rather than an orderly close. */
  error?: string;
}

export interface ProxyServerMetrics {
  onReject?(reason: RejectReason, remotePeer: string): void;
  onSessionStart?(req: ProxyRequest, remotePeer: string): void;
  onBytes?(protocol: ProxyTransport, direction: ByteDirection, bytes: number): void;
  onSessionEnd?(req: ProxyRequest, remotePeer: string, summary: SessionSummary): void;
}

export interface ProxyServerContext {
  log: ProxyLog;
  /** Membership check: may `remotePeer` (a peer ID string) act as node `fromNode`? */
  authorize(remotePeer: string, fromNode: string): boolean | Promise<boolean>;
  headerTimeoutMs?: number;
  connectTimeoutMs?: number;
  udpIdleTimeoutMs?: number;
  /** Concurrent sessions across all peers; further streams are refused ("busy"). */
  maxSessions?: number;
  /** Concurrent sessions of one peer; further streams of that peer are refused ("busy"). */
  maxSessionsPerPeer?: number;
  /** Which targets a member may have us dial: undefined to allow, else the reason sent back ("forbidden"). */
  permit?(req: ProxyRequest): string | undefined;
  /** Overrides for tests or policy (e.g. refusing some targets). Must reject with a readable message. */
  dialTcp?: (target: Target, timeoutMs: number) => Promise<Socket>;
  openUdp?: (target: Target) => Promise<UdpSocket>;
  metrics?: ProxyServerMetrics;
}

export class ProxyServer {
  readonly #ctx: ProxyServerContext;
  readonly #streams = new Set<Stream>();
  /** streams in progress per remote peer, for maxSessionsPerPeer */
  readonly #perPeer = new Map<string, number>();

  constructor(ctx: ProxyServerContext) {
    this.#ctx = ctx;
  }

  /** Pass to `node.handle(PROXY_PROTOCOL, server.handler, PROXY_HANDLER_OPTIONS)`. */
  readonly handler: StreamHandler = (stream, connection) => {
    void this.handle(stream, connection.remotePeer.toString());
  };

  /** For acceptDirectly (direct-accept.ts): a stream that came with its first bytes. */
  readonly withFirstBytes = (stream: Stream, connection: Connection, first: Uint8Array): void => {
    void this.handle(stream, connection.remotePeer.toString(), first);
  };

  /** Streams currently handled (header phase included). */
  get active(): number {
    return this.#streams.size;
  }

  /** Resets every stream in progress (shutdown); their sockets are reset in turn. */
  closeAll(reason = 'proxy server shutting down'): void {
    for (const s of this.#streams) s.abort(new Error(reason));
  }

  /**
   * Handles one inbound proxy stream to completion. Never rejects. `first`:
   * bytes already taken off the stream (direct-accept.ts), decoded before
   * anything more is read.
   */
  async handle(stream: Stream, remotePeer: string, first?: Uint8Array): Promise<void> {
    this.#streams.add(stream);
    this.#perPeer.set(remotePeer, (this.#perPeer.get(remotePeer) ?? 0) + 1);
    try {
      await this.#serve(stream, remotePeer, first);
    } catch (err) {
      // Defensive: a bug here must cost one stream, not the agent.
      this.#ctx.log.error('proxy: stream handler failed', { peer: remotePeer, error: err });
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.#streams.delete(stream);
      const n = (this.#perPeer.get(remotePeer) ?? 1) - 1;
      if (n > 0) this.#perPeer.set(remotePeer, n);
      else this.#perPeer.delete(remotePeer);
    }
  }

  async #serve(stream: Stream, peer: string, first?: Uint8Array): Promise<void> {
    const ctx = this.#ctx;
    const { log, metrics } = ctx;

    let req: ProxyRequest;
    let rest: Uint8Array;
    try {
      const decoder = requestDecoder();
      // usually the whole request came in the stream's first frame
      const now = first && decoder.push(first);
      ({ value: req, rest } = now || (await readHeader(stream, decoder, ctx.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS, 'request header')));
      rest = copy(rest);
    } catch (err) {
      const reason = `bad request header: ${(err as Error).message}`;
      log.warn('proxy: refused stream', { peer, reason });
      metrics?.onReject?.('header', peer);
      return refuse(stream, reason);
    }

    const target = formatHostPort(req.host, req.port);
    const fields = { peer, from: req.fromNode, proto: req.protocol, target };
    let allowed = false;
    try {
      allowed = await ctx.authorize(peer, req.fromNode);
    } catch (err) {
      log.error('proxy: authorize failed', { ...fields, error: err });
    }
    if (!allowed) {
      log.warn('proxy: refused stream', { ...fields, reason: 'not authorized' });
      metrics?.onReject?.('unauthorized', peer);
      return refuse(stream, `peer is not authorized as node ${req.fromNode}`);
    }
    const forbidden = ctx.permit?.(req);
    if (forbidden !== undefined) {
      log.warn('proxy: refused stream', { ...fields, reason: forbidden });
      metrics?.onReject?.('forbidden', peer);
      return refuse(stream, `forbidden: ${forbidden}`);
    }
    // This stream is already counted in #streams.
    if (ctx.maxSessions !== undefined && this.#streams.size > ctx.maxSessions) {
      log.warn('proxy: refused stream', { ...fields, reason: 'busy' });
      metrics?.onReject?.('busy', peer);
      return refuse(stream, `busy: ${ctx.maxSessions} proxy sessions in progress`);
    }
    if (ctx.maxSessionsPerPeer !== undefined && (this.#perPeer.get(peer) ?? 0) > ctx.maxSessionsPerPeer) {
      log.warn('proxy: refused stream', { ...fields, reason: 'busy (this peer)' });
      metrics?.onReject?.('busy', peer);
      return refuse(stream, `busy: ${ctx.maxSessionsPerPeer} proxy sessions of node ${req.fromNode} in progress`);
    }

    if (req.protocol === 'tcp') await this.#serveTcp(stream, peer, req, rest, fields);
    else await this.#serveUdp(stream, peer, req, rest, fields);
  }

  async #serveTcp(stream: Stream, peer: string, req: ProxyRequest, rest: Uint8Array, fields: Record<string, unknown>): Promise<void> {
    const ctx = this.#ctx;
    const dial = ctx.dialTcp ?? defaultDialTcp;
    let socket: Socket;
    try {
      socket = await dial({ host: req.host, port: req.port }, ctx.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    } catch (err) {
      return this.#dialFailed(stream, peer, err, fields);
    }
    // The opener's first bytes go to the target before the reply is encrypted
    // and sent: the target's answer, not our reply, is what the client waits for.
    // The socket is not read until the pipe starts, so nothing from the target
    // (a banner) can overtake the reply.
    const early = stream.status === 'open' ? rest.byteLength : 0;
    if (early > 0) socket.write(rest);
    if (!sendReply(stream, true)) {
      socket.destroy();
      return;
    }
    const started = Date.now();
    ctx.log.debug('proxy: session open', fields);
    ctx.metrics?.onSessionStart?.(req, peer);
    const onBytes = ctx.metrics?.onBytes;
    if (early > 0) onBytes?.('tcp', 'in', early);
    const r = await pipeSocketStream(socket, stream, {
      toSocket: early > 0 ? EMPTY : rest,
      onBytes: onBytes && ((dir, n) => onBytes('tcp', dir, n)),
    });
    // pipe counts from the socket's side: 'in' = stream → target.
    const summary: SessionSummary = { bytesIn: r.bytesIn + early, bytesOut: r.bytesOut, durationMs: Date.now() - started };
    if (r.error) summary.error = r.error.message;
    ctx.log.debug('proxy: session closed', { ...fields, ...summary });
    ctx.metrics?.onSessionEnd?.(req, peer, summary);
  }

  async #serveUdp(stream: Stream, peer: string, req: ProxyRequest, rest: Uint8Array, fields: Record<string, unknown>): Promise<void> {
    const ctx = this.#ctx;
    let udp: UdpSocket;
    try {
      udp = await (ctx.openUdp ?? defaultOpenUdp)({ host: req.host, port: req.port });
    } catch (err) {
      return this.#dialFailed(stream, peer, err, fields);
    }
    if (!sendReply(stream, true)) {
      closeUdp(udp);
      return;
    }
    const started = Date.now();
    ctx.log.debug('proxy: session open', fields);
    ctx.metrics?.onSessionStart?.(req, peer);
    const onBytes = ctx.metrics?.onBytes;
    const session = new UdpSession(stream, {
      initial: rest,
      idleTimeoutMs: ctx.udpIdleTimeoutMs ?? DEFAULT_UDP_IDLE_TIMEOUT_MS,
      onDatagram: (d) => {
        onBytes?.('udp', 'in', d.byteLength);
        udp.send(d, (err) => {
          if (err) ctx.log.debug('proxy: udp send failed', { ...fields, error: err });
        });
      },
    });
    udp.on('message', (msg) => {
      if (session.send(msg)) onBytes?.('udp', 'out', msg.byteLength);
    });
    // ICMP errors (port unreachable...) on a connected socket: UDP shrugs them off.
    udp.on('error', (err) => ctx.log.debug('proxy: udp socket error', { ...fields, error: err }));
    const end = await session.done;
    closeUdp(udp);
    const s = session.stats;
    const summary: SessionSummary = { bytesIn: s.bytesIn, bytesOut: s.bytesOut, durationMs: Date.now() - started };
    if (end.error) summary.error = end.error.message;
    ctx.log.debug('proxy: session closed', { ...fields, ...summary, reason: end.reason, dropped: s.dropped });
    ctx.metrics?.onSessionEnd?.(req, peer, summary);
  }

  async #dialFailed(stream: Stream, peer: string, err: unknown, fields: Record<string, unknown>): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    this.#ctx.log.info('proxy: dial failed', { ...fields, reason });
    this.#ctx.metrics?.onReject?.('dial', peer);
    return refuse(stream, reason);
  }
}

/** Stateless convenience: handle one stream with no session cap. */
export function handleProxyStream(stream: Stream, remotePeer: string, ctx: ProxyServerContext): Promise<void> {
  return new ProxyServer({ ...ctx, maxSessions: undefined }).handle(stream, remotePeer);
}

function sendReply(stream: Stream, ok: true): boolean;
function sendReply(stream: Stream, ok: false, error: string): boolean;
function sendReply(stream: Stream, ok: boolean, error = ''): boolean {
  if (stream.status !== 'open' || stream.writeStatus !== 'writable') return false;
  try {
    stream.send(withHeldAcks(stream, encodeReply(ok ? { ok: true } : { ok: false, error })));
    return true;
  } catch {
    return false;
  }
}

/**
 * Error reply, FIN, then wait (briefly) for the opener to close its side; a
 * stream that lingers is reset. We stop reading, so nothing it sends is kept
 * beyond libp2p's own read-buffer limit.
 */
async function refuse(stream: Stream, reason: string): Promise<void> {
  if (sendReply(stream, false, reason)) {
    try {
      await stream.close({ signal: AbortSignal.timeout(REFUSE_GRACE_MS) });
    } catch {
      // reset by the opener or timed out: abort below
    }
  }
  if (stream.status === 'open') await closedOrTimeout(stream, REFUSE_GRACE_MS);
  stream.abort(new Error(reason));
}

function closedOrTimeout(stream: Stream, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      stream.removeEventListener('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stream.addEventListener('close', done);
  });
}

function closeUdp(udp: UdpSocket): void {
  try {
    udp.close();
  } catch {
    // already closed
  }
}
