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

/**
 * yamux lets a stream's receive window grow to 16 MiB, and a paused stream
 * keeps accepting what the peer was already granted; libp2p aborts a stream
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
  return new Promise((resolve) => {
    let bytesIn = 0;
    let bytesOut = 0;
    let error: Error | undefined;
    let finished = false;
    let socketClosed = socket.destroyed;
    let streamClosed = false;
    // FIN from the remote that already happened before we attached counts.
    let sawRemoteFin = stream.status === 'open' && stream.remoteWriteStatus === 'closed';
    let closedStreamWrite = false;
    let socketSentEof = false;
    let endedSocket = false;
    let waitingSocketDrain = false;

    socket.allowHalfOpen = true; // without it the runtime ends our side on the peer's EOF
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, opts.maxReadBufferBytes ?? PAUSED_READ_BUFFER_BYTES);

    const fail = (err: Error): void => {
      error ??= err;
      resetSocket(socket);
      stream.abort(err); // no-op when already closed/aborted/reset
      maybeDone();
    };

    const maybeDone = (): void => {
      if (finished || !socketClosed || !streamClosed) return;
      finished = true;
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite);
      stream.removeEventListener('end', onEnd);
      stream.removeEventListener('close', onStreamClose);
      resolve(error ? { bytesIn, bytesOut, error } : { bytesIn, bytesOut });
    };

    // ---- stream → socket
    const writeToSocket = (buf: Uint8Array): void => {
      if (buf.byteLength === 0) return;
      if (endedSocket || socket.destroyed || !socket.writable) return fail(new Error('data from the stream after the socket closed'));
      bytesIn += buf.byteLength;
      opts.onBytes?.('in', buf.byteLength);
      if (!socket.write(buf) && !waitingSocketDrain) {
        waitingSocketDrain = true;
        if (stream.readStatus === 'readable') stream.pause();
        socket.once('drain', () => {
          waitingSocketDrain = false;
          if (stream.readStatus === 'paused') stream.resume();
        });
      }
    };
    const onMessage = (evt: StreamMessageEvent): void => {
      if (evt.data instanceof Uint8Array) writeToSocket(evt.data);
      else for (const buf of evt.data) writeToSocket(buf);
    };
    const onRemoteCloseWrite = (): void => {
      sawRemoteFin = true;
    };
    const endSocket = (): void => {
      if (endedSocket || socket.destroyed) return;
      endedSocket = true;
      socket.end();
    };
    const onEnd = (): void => {
      // 'end' also fires on abort/reset/connection loss; only a FIN means EOF.
      if (sawRemoteFin && (stream.status === 'open' || stream.status === 'closed')) endSocket();
    };
    const onStreamClose = (evt: StreamCloseEvent): void => {
      streamClosed = true;
      if (evt.error) return fail(evt.error);
      if (!sawRemoteFin || !closedStreamWrite) return fail(new Error('stream closed without an orderly shutdown (connection lost)'));
      maybeDone();
    };

    // ---- socket → stream
    const sendToStream = (buf: Uint8Array): void => {
      if (buf.byteLength === 0) return;
      bytesOut += buf.byteLength;
      opts.onBytes?.('out', buf.byteLength);
      let more: boolean;
      try {
        more = stream.send(buf);
      } catch (err) {
        return fail(err as Error);
      }
      if (!more) {
        socket.pause();
        stream.onDrain().then(
          () => {
            if (!socket.destroyed) socket.resume();
          },
          () => {}, // the stream closed: onStreamClose handles it
        );
      }
    };
    const onSocketEnd = (): void => {
      socketSentEof = true;
      closedStreamWrite = true;
      stream.close().catch((err: Error) => fail(err));
    };
    const onSocketClose = (): void => {
      socketClosed = true;
      if (!(socketSentEof && endedSocket)) return fail(error ?? new Error('socket closed before an orderly shutdown'));
      maybeDone();
    };

    socket.on('error', (err) => fail(err)); // stays attached: a late 'error' must not crash the process
    if (socket.destroyed) return fail(new Error('socket already closed'));
    if (stream.status !== 'open') {
      streamClosed = true;
      return fail(new Error(`stream already ${stream.status}`));
    }

    socket.on('close', onSocketClose);
    socket.on('end', onSocketEnd);
    stream.addEventListener('close', onStreamClose);
    stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite);

    writeToSocket(opts.toSocket ?? EMPTY);
    sendToStream(opts.toStream ?? EMPTY);
    // the socket's EOF came while the caller was still connecting
    if (socket.readableEnded) onSocketEnd();
    if (sawRemoteFin && stream.readableEnded && stream.readBufferLength === 0) endSocket();
    else stream.addEventListener('end', onEnd);
    stream.addEventListener('message', onMessage);
    socket.on('data', sendToStream);
    socket.resume(); // callers may have paused it while a handshake was in flight
  });
}
