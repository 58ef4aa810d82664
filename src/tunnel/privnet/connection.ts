/**
 * The protected connection: a MultiaddrConnection that passes its bytes
 * through a privnet layer (layers.ts: v1 encrypts them, v2 proves the psk
 * once), structured like @libp2p/pnet's BoxMessageStream.
 *
 * Key confirmation: each side first sends the layer's confirmation. The
 * receiver strips and checks the remote's before any byte goes up, so a peer
 * with another secret (or a random client) is cut off one round trip after
 * the nonce exchange instead of stalling the noise handshake until the
 * upgrade timeout. It is sent right behind the nonce exchange and costs no
 * extra round trip before protect() returns.
 */
import { AbstractMultiaddrConnection } from '@libp2p/utils';
import type { SendResult } from '@libp2p/utils';
import type { AbortOptions, Logger, MultiaddrConnection } from '@libp2p/interface';
import { PrivnetHandshakeError, PrivnetKeyMismatchError, PrivnetVersionError } from './errors.ts';
import type { PrivnetLayer } from './layers.ts';

/** most bytes the layer above may hand down before the remote's confirmation */
export const MAX_HELD_BYTES = 256 * 1024;

type SendList = Parameters<AbstractMultiaddrConnection['sendData']>[0];

export interface PrivnetConnectionInit {
  maConn: MultiaddrConnection;
  log: Logger;
  /** Takes ownership: destroyed when the connection closes. */
  layer: PrivnetLayer;
  /** Upper bound on bytes encrypted (and allocated) per send. */
  maxMessageSize: number;
  /** Abort if the remote's confirmation has not arrived within this many ms. */
  confirmTimeoutMs: number;
  /** Called once when the remote's confirmation does not decrypt. */
  onKeyMismatch?: () => void;
  /** Called once when the remote's confirmation is that of the other privnet version. */
  onVersionMismatch?: (err: PrivnetVersionError) => void;
  /** Called once when the handshake is over: confirmed, failed or closed. */
  onSettled?: () => void;
}

export class PrivnetConnection extends AbstractMultiaddrConnection {
  readonly #maConn: MultiaddrConnection;
  readonly #layer: PrivnetLayer;
  /** the remote's confirmation as received so far; undefined once checked */
  #confirm: Uint8Array | undefined;
  #confirmHave = 0;
  #confirmTimer: ReturnType<typeof setTimeout> | undefined;
  #destroyed = false;
  readonly #onKeyMismatch?: () => void;
  readonly #onVersionMismatch?: (err: PrivnetVersionError) => void;
  #onSettled?: () => void;
  #keyMismatch = false;
  /** what the layer above sent before the remote's confirmation was checked */
  #held: Array<Uint8Array | SendList> = [];
  #heldBytes = 0;

  constructor(init: PrivnetConnectionInit) {
    super({
      log: init.log,
      remoteAddr: init.maConn.remoteAddr,
      direction: init.maConn.direction,
      maxMessageSize: init.layer.chunked ? init.maxMessageSize : undefined,
    });
    this.#maConn = init.maConn;
    this.#layer = init.layer;
    this.#confirm = new Uint8Array(init.layer.confirmBytes);
    this.#onKeyMismatch = init.onKeyMismatch;
    this.#onVersionMismatch = init.onVersionMismatch;
    this.#onSettled = init.onSettled;

    this.addEventListener('close', () => this.#destroy());

    this.#maConn.send(init.layer.confirmation);
    this.#confirmTimer = setTimeout(() => {
      this.abort(new PrivnetHandshakeError(`no key confirmation from remote within ${init.confirmTimeoutMs} ms`));
    }, init.confirmTimeoutMs);
    this.#confirmTimer.unref?.();

    this.#maConn.addEventListener('message', (evt) => {
      const data = evt.data;
      if (data instanceof Uint8Array) this.#receive(data);
      else for (const buf of data) this.#receive(buf);
    });
    this.#maConn.addEventListener('drain', () => this.onMuxerDrain());
    this.#maConn.addEventListener('close', (evt) => {
      if (evt.error != null) {
        if (evt.local) this.abort(evt.error);
        else this.onRemoteReset();
      } else {
        this.onTransportClosed();
      }
    });
  }

  #receive(buf: Uint8Array): void {
    if (this.#destroyed || buf.byteLength === 0) return;
    const confirm = this.#confirm;
    if (confirm !== undefined) {
      const n = Math.min(confirm.byteLength - this.#confirmHave, buf.byteLength);
      confirm.set(buf.subarray(0, n), this.#confirmHave);
      this.#confirmHave += n;
      const verdict = this.#layer.check(confirm.subarray(0, this.#confirmHave));
      if (verdict === 'more') return;
      if (verdict !== 'ok') {
        if (verdict === 'mismatch') {
          this.#keyMismatch = true;
          this.#onKeyMismatch?.();
          this.abort(new PrivnetKeyMismatchError());
        } else {
          const err = new PrivnetVersionError(this.#layer.version, verdict.otherVersion);
          this.#onVersionMismatch?.(err);
          this.abort(err);
        }
        return;
      }
      this.#confirm = undefined;
      clearTimeout(this.#confirmTimer);
      this.#settle();
      this.log.trace('key confirmation received');
      for (const out of this.#held.splice(0)) this.#maConn.send(out);
      if (n === buf.byteLength) return;
      buf = buf.subarray(n);
    }
    // In place: the transport has already consumed this buffer and we are the
    // only 'message' listener, so no one else reads it afterwards.
    this.#layer.incoming(buf);
    this.onData(buf);
  }

  #settle(): void {
    const f = this.#onSettled;
    this.#onSettled = undefined;
    f?.();
  }

  #destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#settle();
    clearTimeout(this.#confirmTimer);
    this.#layer.destroy();
    this.#held = [];
  }

  sendData(data: SendList): SendResult {
    const len = data.byteLength;
    const out = this.#layer.outgoing(data, len);
    // Nothing of noise's leaves before the remote has proved the psk: it
    // could not read it anyway, and a peer that closes on our confirmation
    // while we write gets a reset back, which can make our kernel drop the
    // confirmation the peer sent before closing, unread (a psk mismatch then
    // showed as "Encryption failed"). Only noise's first message waits, for
    // about one one-way trip.
    if (this.#confirm !== undefined) {
      // noise sends one handshake message here; anything near this much is not noise
      if ((this.#heldBytes += len) > MAX_HELD_BYTES) throw new PrivnetHandshakeError(`more than ${MAX_HELD_BYTES} bytes to send before the remote confirmed the key`);
      this.#held.push(out);
      return { sentBytes: len, canSendMore: true };
    }
    return { sentBytes: len, canSendMore: this.#maConn.send(out) };
  }

  async sendClose(options?: AbortOptions): Promise<void> {
    await this.#maConn.close(options);
  }

  sendReset(err: Error): void {
    // After a key mismatch, close with a FIN rather than a reset: a reset can
    // discard our own confirmation still queued for the remote, which then
    // sees only a dropped connection instead of the real reason.
    if (this.#keyMismatch) {
      this.#maConn.close({ signal: AbortSignal.timeout(2000) }).catch(() => this.#maConn.abort(err));
      return;
    }
    this.#maConn.abort(err);
  }

  sendPause(): void {
    this.#maConn.pause();
  }

  sendResume(): void {
    this.#maConn.resume();
  }
}
