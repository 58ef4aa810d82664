/**
 * Opening side of `/edgemesh/proxy/1.0.0`: send the request on a fresh stream,
 * wait for the reply, then carry bytes (TCP) or datagrams (UDP).
 *
 * The receiver may start piping the target's bytes right behind its reply
 * (server-first protocols: SSH, SMTP banners), so those bytes can arrive in
 * the same chunk as the reply. openProxyStream therefore returns them in a
 * ProxyChannel, and proxyTcp / UdpSession deliver them first.
 */
import type { ByteSocket as Socket } from '../../net/byte-socket.ts';
import type { Stream } from '@libp2p/interface';
import { EMPTY, concat, copy } from './bytes.ts';
import { encodeRequest, replyDecoder } from './header.ts';
import type { ProxyRequest } from './header.ts';
import { pipeSocketStream } from './pipe.ts';
import type { PipeOptions, PipeResult } from './pipe.ts';
import { readHeader } from './read-header.ts';
import { AfterSelectDecoder, selectAndSend } from './optimistic-select.ts';
import { UdpSession } from './udp-session.ts';
import type { UdpSessionOptions } from './udp-session.ts';

/** Longer than the receiver's own connect timeout, so its reason reaches us. */
export const DEFAULT_OPEN_TIMEOUT_MS = 15_000;

/** The receiver refused: `reason` is its text, e.g. "connect ECONNREFUSED 10.0.0.1:80". */
export class ProxyRemoteError extends Error {
  override name = 'ProxyRemoteError';
  constructor(readonly reason: string) {
    super(reason);
  }
}

export interface ProxyChannel {
  stream: Stream;
  /** Payload that arrived together with the reply (usually empty). */
  initial: Uint8Array;
}

export interface OpenOptions {
  timeoutMs?: number;
  /**
   * The stream has not negotiated a protocol yet: send the multistream-select
   * lines for this protocol in front of the request and check their answer in
   * front of the reply (optimistic-select.ts), saving a round trip.
   */
  selectProtocol?: string;
  /**
   * The client's bytes, sent right behind the request and, until the reply,
   * as they come, without waiting for it (the receiver writes them to the
   * target once connected). It costs nothing when the target refuses: the
   * source still has these bytes for another.
   */
  early?: EarlySource;
}

/** structurally the model's EarlyBytes (model/tunnel.ts) */
export interface EarlySource {
  read(): Uint8Array | undefined;
  follow(send: (chunk: Uint8Array) => void): () => void;
}

/**
 * Sends `header`, awaits the reply. On any failure the stream is reset and
 * the promise rejects (ProxyRemoteError when the receiver said no).
 */
export async function openProxyStream(stream: Stream, header: ProxyRequest, opts: OpenOptions = {}): Promise<ProxyChannel> {
  let stopFollowing: (() => void) | undefined;
  try {
    // small (the early bytes are bounded by their source): queued even if the muxer asks us to wait
    const early = opts.early?.read();
    const request = concat(encodeRequest(header), early ?? EMPTY);
    stream.send(opts.selectProtocol ? selectAndSend(opts.selectProtocol, request) : request);
    stopFollowing = opts.early?.follow((chunk) => {
      if (stream.status === 'open' && stream.writeStatus === 'writable') stream.send(chunk);
    });
    const decoder = opts.selectProtocol ? new AfterSelectDecoder(opts.selectProtocol, replyDecoder()) : replyDecoder();
    const { value, rest } = await readHeader(stream, decoder, opts.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS, 'proxy reply');
    if (!value.ok) throw new ProxyRemoteError(value.error);
    return { stream, initial: copy(rest) };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    stream.abort(e);
    throw e;
  } finally {
    stopFollowing?.();
  }
}

/** Pipes a local TCP socket through an opened TCP proxy channel (see pipe.ts). */
export function proxyTcp(socket: Socket, channel: ProxyChannel, opts: Omit<PipeOptions, 'toSocket'> = {}): Promise<PipeResult> {
  return pipeSocketStream(socket, channel.stream, { ...opts, toSocket: channel.initial });
}

/**
 * A UDP session over an opened UDP proxy channel. When it closes (idle
 * timeout on either side, or reset) the caller opens a new one on demand.
 */
export function udpSession(channel: ProxyChannel, opts: Omit<UdpSessionOptions, 'initial'> = {}): UdpSession {
  return new UdpSession(channel.stream, { ...opts, initial: channel.initial });
}

export { UdpSession };
