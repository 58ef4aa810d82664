/**
 * One UDP "session" carried by one proxy stream: datagrams are framed with
 * datagram.ts both ways. Used by the opener (the caller feeds it datagrams
 * from its own UDP socket) and by the receiver (wired to a dgram socket
 * aimed at the target).
 *
 * UDP semantics are kept: when the stream cannot take more (the muxer window
 * is full) a datagram is dropped rather than queued without bound.
 */
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { EMPTY, flatten } from './bytes.ts';
import { DatagramDecoder, MAX_DATAGRAM_BYTES, encodeDatagram } from './datagram.ts';

/** How long close() waits for the peer's FIN before resetting the stream. */
export const UDP_CLOSE_GRACE_MS = 2_000;

export type UdpCloseReason = 'local' | 'remote' | 'idle' | 'error';

export interface UdpSessionStats {
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Datagrams not sent because the stream was congested, closed, or they were too big. */
  dropped: number;
}

export interface UdpSessionOptions {
  /** Bytes read off the stream together with the header (they start the datagram flow). */
  initial?: Uint8Array;
  /** Close the session after this long with no datagram either way (0 = never). */
  idleTimeoutMs?: number;
  onDatagram?: (datagram: Uint8Array) => void;
  onClose?: (reason: UdpCloseReason, error?: Error) => void;
}

export class UdpSession {
  onDatagram: ((datagram: Uint8Array) => void) | undefined;
  onClose: ((reason: UdpCloseReason, error?: Error) => void) | undefined;
  readonly stats: UdpSessionStats = { datagramsIn: 0, datagramsOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0 };
  /** Resolves once the stream is closed (either way); never rejects. */
  readonly done: Promise<{ reason: UdpCloseReason; error?: Error }>;

  #stream: Stream;
  #decoder = new DatagramDecoder();
  #closeReason: UdpCloseReason | undefined;
  #finished = false;
  #idleMs: number;
  #lastActivity = Date.now();
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #resolveDone!: (v: { reason: UdpCloseReason; error?: Error }) => void;

  constructor(stream: Stream, opts: UdpSessionOptions = {}) {
    this.#stream = stream;
    this.onDatagram = opts.onDatagram;
    this.onClose = opts.onClose;
    this.#idleMs = opts.idleTimeoutMs ?? 0;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));

    if (stream.status !== 'open') {
      queueMicrotask(() => this.#finish('error', new Error(`stream already ${stream.status}`)));
      return;
    }
    stream.addEventListener('message', this.#onMessage);
    stream.addEventListener('close', this.#onStreamClose);
    stream.addEventListener('end', this.#onEnd);
    this.#armIdle();
    const initial = opts.initial ?? EMPTY;
    // Deliver leftovers after the constructor returns so callbacks set afterwards still see them.
    if (initial.byteLength > 0) queueMicrotask(() => this.#deliver(initial));
    if (stream.readableEnded) queueMicrotask(this.#onEnd);
  }

  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Sends one datagram; false if it was dropped (closed, congested, or over 65535 bytes). */
  send(datagram: Uint8Array): boolean {
    const s = this.#stream;
    if (this.closed || s.writeStatus !== 'writable' || s.writableNeedsDrain || datagram.byteLength > MAX_DATAGRAM_BYTES) {
      this.stats.dropped++;
      return false;
    }
    try {
      s.send(encodeDatagram(datagram));
    } catch {
      this.stats.dropped++;
      return false;
    }
    this.stats.datagramsOut++;
    this.stats.bytesOut += datagram.byteLength;
    this.#lastActivity = Date.now();
    return true;
  }

  /** Orderly close: FIN to the peer, then reset if it does not close its side in time. */
  close(reason: UdpCloseReason = 'local'): Promise<void> {
    this.#beginClose(reason);
    return this.done.then(() => {});
  }

  /** Immediate reset. */
  abort(err: Error): void {
    this.#closeReason ??= 'error';
    this.#stream.abort(err);
    this.#finish('error', err);
  }

  #beginClose(reason: UdpCloseReason): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    this.#clearIdle();
    const s = this.#stream;
    if (s.status !== 'open') return this.#finish(reason);
    s.close().catch(() => {});
    this.#graceTimer = setTimeout(() => {
      s.abort(new Error(`UDP session closed (${reason}); peer did not close in ${UDP_CLOSE_GRACE_MS} ms`));
    }, UDP_CLOSE_GRACE_MS);
  }

  #deliver(chunk: Uint8Array): void {
    let datagrams: Uint8Array[];
    try {
      datagrams = this.#decoder.push(chunk);
    } catch (err) {
      return this.abort(err as Error); // cannot happen with a 65535 limit; defensive
    }
    for (const d of datagrams) {
      this.stats.datagramsIn++;
      this.stats.bytesIn += d.byteLength;
      this.#lastActivity = Date.now();
      try {
        this.onDatagram?.(d);
      } catch {
        // a throwing consumer must not break the session
      }
    }
  }

  #onMessage = (evt: StreamMessageEvent): void => {
    if (evt.data instanceof Uint8Array) this.#deliver(evt.data);
    else for (const buf of evt.data) this.#deliver(buf);
  };

  // 'end' (not 'remoteCloseWrite', which yamux raises before delivering the
  // data of a FIN-carrying frame) means every datagram has been delivered.
  #onEnd = (): void => {
    if (this.#stream.status === 'open') this.#beginClose('remote'); // else 'close' reports it
  };

  #onStreamClose = (evt: StreamCloseEvent): void => {
    if (evt.error) {
      this.#closeReason ??= 'error';
      this.#finish(this.#closeReason, evt.error);
    } else {
      this.#closeReason ??= 'remote';
      this.#finish(this.#closeReason);
    }
  };

  #finish(reason: UdpCloseReason, error?: Error): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#closeReason ??= reason;
    this.#clearIdle();
    clearTimeout(this.#graceTimer);
    const s = this.#stream;
    s.removeEventListener('message', this.#onMessage);
    s.removeEventListener('close', this.#onStreamClose);
    s.removeEventListener('end', this.#onEnd);
    const result = error ? { reason, error } : { reason };
    try {
      this.onClose?.(reason, error);
    } finally {
      this.#resolveDone(result);
    }
  }

  #armIdle(): void {
    if (this.#idleMs <= 0) return;
    // One timer per session, re-armed lazily: cheap at high packet rates.
    const wait = Math.max(0, this.#lastActivity + this.#idleMs - Date.now());
    this.#idleTimer = setTimeout(() => {
      if (this.closed) return;
      if (Date.now() - this.#lastActivity >= this.#idleMs) this.#beginClose('idle');
      else this.#armIdle();
    }, wait);
  }

  #clearIdle(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }
}
