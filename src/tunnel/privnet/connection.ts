/**
 * The protected connection: a MultiaddrConnection that XORs everything it
 * sends and receives with the per-direction ChaCha20 keystreams, structured
 * like @libp2p/pnet's BoxMessageStream.
 *
 * Key confirmation: the first CONFIRM_BYTES of each direction's plaintext
 * are zeros. The receiver strips and checks them, so a peer with another
 * secret (or a random client) is cut off one round trip after the nonce
 * exchange instead of stalling the noise handshake until the upgrade
 * timeout. This is sent right behind the nonce exchange and costs no extra
 * round trip before protect() returns.
 */
import { AbstractMultiaddrConnection } from '@libp2p/utils';
import type { SendResult } from '@libp2p/utils';
import type { AbortOptions, Logger, MultiaddrConnection } from '@libp2p/interface';
import { PrivnetHandshakeError, PrivnetKeyMismatchError } from './errors.ts';
import type { Keystream } from './keystream.ts';

export const CONFIRM_BYTES = 16;

type SendList = Parameters<AbstractMultiaddrConnection['sendData']>[0];

export interface PrivnetConnectionInit {
  maConn: MultiaddrConnection;
  log: Logger;
  /** Takes ownership: destroyed when the connection closes. */
  tx: Keystream;
  rx: Keystream;
  /** Upper bound on bytes encrypted (and allocated) per send. */
  maxMessageSize: number;
  /** Abort if the remote's confirmation has not arrived within this many ms. */
  confirmTimeoutMs: number;
  /** Called once when the remote's confirmation does not decrypt. */
  onKeyMismatch?: () => void;
}

export class PrivnetConnection extends AbstractMultiaddrConnection {
  readonly #maConn: MultiaddrConnection;
  readonly #tx: Keystream;
  readonly #rx: Keystream;
  #confirmLeft = CONFIRM_BYTES;
  #confirmTimer: ReturnType<typeof setTimeout> | undefined;
  #destroyed = false;
  readonly #onKeyMismatch?: () => void;
  #keyMismatch = false;

  constructor(init: PrivnetConnectionInit) {
    super({
      log: init.log,
      remoteAddr: init.maConn.remoteAddr,
      direction: init.maConn.direction,
      maxMessageSize: init.maxMessageSize,
    });
    this.#maConn = init.maConn;
    this.#tx = init.tx;
    this.#rx = init.rx;
    this.#onKeyMismatch = init.onKeyMismatch;

    this.addEventListener('close', () => this.#destroy());

    const confirm = new Uint8Array(CONFIRM_BYTES);
    this.#tx.xor(confirm, confirm);
    this.#maConn.send(confirm);
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
    // In place: the transport has already consumed this buffer and we are the
    // only 'message' listener, so no one else reads it afterwards.
    this.#rx.xor(buf, buf);
    if (this.#confirmLeft > 0) {
      const n = Math.min(this.#confirmLeft, buf.byteLength);
      for (let i = 0; i < n; i++) {
        if (buf[i] !== 0) {
          this.#keyMismatch = true;
          this.#onKeyMismatch?.();
          this.abort(new PrivnetKeyMismatchError());
          return;
        }
      }
      this.#confirmLeft -= n;
      if (this.#confirmLeft === 0) {
        clearTimeout(this.#confirmTimer);
        this.log.trace('key confirmation received');
      }
      if (n === buf.byteLength) return;
      buf = buf.subarray(n);
    }
    this.onData(buf);
  }

  #destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    clearTimeout(this.#confirmTimer);
    this.#tx.destroy();
    this.#rx.destroy();
  }

  sendData(data: SendList): SendResult {
    const len = data.byteLength;
    // A fresh buffer per send: the transport may hold it until the socket
    // drains, and the plaintext belongs to the layer above.
    const out = Buffer.allocUnsafe(len);
    let off = 0;
    for (const buf of data) {
      const n = buf.byteLength;
      if (n === 0) continue;
      this.#tx.xor(buf, off === 0 && n === len ? out : out.subarray(off, off + n));
      off += n;
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
