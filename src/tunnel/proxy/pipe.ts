/**
 * Pipes a TCP socket and a libp2p stream both ways, as TCP would:
 * - backpressure each way (a full socket pauses the stream, whose muxer then
 *   stops granting window; a full stream pauses the socket);
 * - half-close each way (socket EOF → stream close-write; stream FIN → socket end);
 * - resets each way (socket error → stream abort; stream reset → socket RST).
 *
 * libp2p 3 semantics this relies on (yamux, @libp2p/utils AbstractStream):
 * - 'remoteCloseWrite' fires when the FIN arrives, possibly while data is still
 *   queued in a paused stream; 'end' fires once that data has been delivered,
 *   so 'end' (after a FIN) is the point to end the socket.
 * - A clean 'close' (no error) also happens when the whole connection goes away
 *   (e.g. a relayed connection replaced by a direct one): the stream is then
 *   closed without any FIN. Only FIN-both-ways counts as clean here; anything
 *   else resets the socket so the application sees a failure, not a truncation.
 */
import type { ByteSocket as Socket } from '../../net/byte-socket.ts';
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { EMPTY } from './bytes.ts';
import { windowBudget } from '../flow/budget.ts';
import { noteBytes } from '../flow/gc-pacer.ts';
import { STREAM_HIGH_WATER, STREAM_LOW_WATER } from '../flow/water-marks.ts';

/**
 * A paused stream keeps accepting what its peer was already granted (its
 * receive window, at most the configured maximum); libp2p aborts a stream
 * whose read buffer passes maxReadBufferLength (4 MiB by default). Pausing is
 * our backpressure, so the buffer must hold a full window.
 */
export const PAUSED_READ_BUFFER_BYTES = 16 * 1024 * 1024 + 256 * 1024;

export type ByteDirection = 'in' | 'out';

export interface PipeOptions {
  /** Bytes already read off the stream (they followed a header); written to the socket first. */
  toSocket?: Uint8Array;
  /** Bytes already read off the socket; sent into the stream first. */
  toStream?: Uint8Array;
  /** Live byte counts, for metrics: 'in' = stream → socket, 'out' = socket → stream. */
  onBytes?: (direction: ByteDirection, bytes: number) => void;
  /** Overrides PAUSED_READ_BUFFER_BYTES (if larger than the stream's current limit). */
  maxReadBufferBytes?: number;
}

export interface PipeResult {
  /** Bytes received from the stream and written to the socket. */
  bytesIn: number;
  /** Bytes read from the socket and sent into the stream. */
  bytesOut: number;
  /** Set when the pipe ended by a reset/abort on either side rather than FIN both ways. */
  error?: Error;
}

/** Sends a TCP RST when the runtime can (Bun and Node ≥ 16.17 can), else just closes. */
export function resetSocket(socket: Socket, err?: Error): void {
  if (socket.destroyed) return;
  if (typeof socket.resetAndDestroy === 'function') {
    try {
      socket.resetAndDestroy();
      return;
    } catch {
      // not connected yet, or already closing: fall through
    }
  }
  socket.destroy(err);
}

/** Never rejects; resolves when both the socket and the stream are closed. */
export function pipeSocketStream(socket: Socket, stream: Stream, opts: PipeOptions = {}): Promise<PipeResult> {
  return new Promise((resolve) => new SocketStreamPipe(socket, stream, opts, resolve).start());
}

/**
 * One pipe's state. A class rather than closures: a proxied connection holds
 * one pipe per agent for its lifetime, and a dozen closures and their scope
 * per pipe add up with thousands of connections open. The stream's events
 * reach it as a listener object (handleEvent); the socket's, through four
 * bound methods.
 */
class SocketStreamPipe {
  private bytesIn = 0;
  private bytesOut = 0;
  private error: Error | undefined;
  private finished = false;
  private socketClosed: boolean;
  private streamClosed = false;
  /** FIN from the remote that already happened before we attached counts */
  private sawRemoteFin: boolean;
  private closedStreamWrite = false;
  private socketSentEof = false;
  private endedSocket = false;
  private waitingSocketDrain = false;
  /** the socket is paused until the stream's write buffer is down to STREAM_LOW_WATER */
  private waitingStream = false;
  private readonly onSocketData = (buf: Uint8Array): void => this.sendToStream(buf);
  private readonly onSocketEnd = (): void => this.socketEnded();
  private readonly onSocketClose = (): void => this.socketClosedNow();
  private readonly onSocketError = (err: Error): void => this.fail(err);

  constructor(
    private readonly socket: Socket,
    private readonly stream: Stream,
    private readonly opts: PipeOptions,
    private readonly resolve: (r: PipeResult) => void,
  ) {
    this.socketClosed = socket.destroyed;
    this.sawRemoteFin = stream.status === 'open' && stream.remoteWriteStatus === 'closed';
  }

  start(): void {
    const { socket, stream, opts } = this;
    socket.allowHalfOpen = true; // without it the runtime ends our side on the peer's EOF
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, opts.maxReadBufferBytes ?? PAUSED_READ_BUFFER_BYTES);

    socket.on('error', this.onSocketError); // stays attached: a late 'error' must not crash the process
    if (socket.destroyed) return this.fail(new Error('socket already closed'));
    if (stream.status !== 'open') {
      this.streamClosed = true;
      return this.fail(new Error(`stream already ${stream.status}`));
    }

    socket.on('close', this.onSocketClose);
    socket.on('end', this.onSocketEnd);
    stream.addEventListener('close', this);
    stream.addEventListener('remoteCloseWrite', this);

    this.writeToSocket(opts.toSocket ?? EMPTY);
    this.sendToStream(opts.toStream ?? EMPTY);
    // the socket's EOF came while the caller was still connecting
    if (socket.readableEnded) this.socketEnded();
    if (this.sawRemoteFin && stream.readableEnded && stream.readBufferLength === 0) this.endSocket();
    else stream.addEventListener('end', this);
    stream.addEventListener('message', this);
    socket.on('data', this.onSocketData);
    socket.resume(); // callers may have paused it while a handshake was in flight
  }

  /** the stream's events */
  handleEvent(evt: Event): void {
    switch (evt.type) {
      case 'message': {
        const data = (evt as StreamMessageEvent).data;
        if (data instanceof Uint8Array) this.writeToSocket(data);
        else for (const buf of data) this.writeToSocket(buf);
        return;
      }
      case 'remoteCloseWrite':
        this.sawRemoteFin = true;
        return;
      case 'drain':
      case 'idle':
        // after the stream's own listener has sent what the drain allows
        if (this.waitingStream) queueMicrotask(() => this.maybeResumeSocket());
        return;
      case 'end':
        // 'end' also fires on abort/reset/connection loss; only a FIN means EOF.
        if (this.sawRemoteFin && (this.stream.status === 'open' || this.stream.status === 'closed')) this.endSocket();
        return;
      case 'close': {
        this.streamClosed = true;
        const err = (evt as StreamCloseEvent).error;
        if (err) return this.fail(err);
        if (!this.sawRemoteFin || !this.closedStreamWrite) return this.fail(new Error('stream closed without an orderly shutdown (connection lost)'));
        return this.maybeDone();
      }
    }
  }

  private fail(err: Error): void {
    this.error ??= err;
    resetSocket(this.socket);
    this.stream.abort(err); // no-op when already closed/aborted/reset
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.finished || !this.socketClosed || !this.streamClosed) return;
    this.finished = true;
    const stream = this.stream;
    stream.removeEventListener('message', this);
    stream.removeEventListener('remoteCloseWrite', this);
    stream.removeEventListener('end', this);
    stream.removeEventListener('close', this);
    this.stopWaitingStream();
    const { bytesIn, bytesOut, error } = this;
    this.resolve(error ? { bytesIn, bytesOut, error } : { bytesIn, bytesOut });
  }

  // ---- stream → socket
  private writeToSocket(buf: Uint8Array): void {
    if (buf.byteLength === 0) return;
    const socket = this.socket;
    if (this.endedSocket || socket.destroyed || !socket.writable) return this.fail(new Error('data from the stream after the socket closed'));
    this.bytesIn += buf.byteLength;
    this.opts.onBytes?.('in', buf.byteLength);
    noteBytes(buf.byteLength);
    if (!socket.write(buf) && !this.waitingSocketDrain) {
      this.waitingSocketDrain = true;
      if (this.stream.readStatus === 'readable') this.stream.pause();
      socket.once('drain', () => {
        this.waitingSocketDrain = false;
        if (this.stream.readStatus === 'paused') this.stream.resume();
      });
    }
  }

  private endSocket(): void {
    if (this.endedSocket || this.socket.destroyed) return;
    this.endedSocket = true;
    this.socket.end();
  }

  // ---- socket → stream
  private sendToStream(buf: Uint8Array): void {
    if (buf.byteLength === 0) return;
    this.bytesOut += buf.byteLength;
    this.opts.onBytes?.('out', buf.byteLength);
    noteBytes(buf.byteLength);
    let more: boolean;
    try {
      more = this.stream.send(buf);
    } catch (err) {
      return this.fail(err as Error);
    }
    if ((!more || this.stream.writeBufferLength > STREAM_HIGH_WATER) && !this.waitingStream) {
      this.waitingStream = true;
      windowBudget.socketPauses++;
      this.socket.pause();
      this.stream.addEventListener('drain', this);
      this.stream.addEventListener('idle', this);
    }
  }

  private maybeResumeSocket(): void {
    if (!this.waitingStream || this.stream.writeBufferLength > STREAM_LOW_WATER) return;
    this.stopWaitingStream();
    if (!this.socket.destroyed) this.socket.resume();
  }

  private stopWaitingStream(): void {
    if (!this.waitingStream) return;
    this.waitingStream = false;
    this.stream.removeEventListener('drain', this);
    this.stream.removeEventListener('idle', this);
  }

  private socketEnded(): void {
    this.socketSentEof = true;
    this.closedStreamWrite = true;
    this.stream.close().catch((err: Error) => this.fail(err));
  }

  private socketClosedNow(): void {
    this.socketClosed = true;
    if (!(this.socketSentEof && this.endedSocket)) return this.fail(this.error ?? new Error('socket closed before an orderly shutdown'));
    this.maybeDone();
  }
}
