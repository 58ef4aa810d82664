/**
 * "edgemesh privnet": a libp2p ConnectionProtector with the purpose of
 * @libp2p/pnet (nodes without the mesh secret cannot even reach the noise
 * handshake). Not wire-compatible with pnet; every node runs this binary.
 *
 * Wire protocol, per connection:
 *  1. Each side sends a fresh random 24-byte nonce and reads the remote's
 *     (handshakeTimeoutMs). Equal nonces are rejected: that is a peer
 *     reflecting ours, which would make key_in equal key_out.
 *  2. v2 (the default): each side sends its 32-byte proof (kdf.ts) and
 *     checks the remote's before passing any byte up; later bytes pass as
 *     they are (noise inside provides integrity and confidentiality; this
 *     layer is access control).
 *     v1: keys per kdf.ts; ChaCha20 with all-zero 16-byte iv (counter 0,
 *     zero nonce) per direction; every later byte is XORed with the
 *     keystream; the first 16 plaintext bytes of each direction are zeros
 *     (key confirmation).
 *  3. A confirmation that fails aborts the connection; one that is the other
 *     version's is reported as such (layers.ts).
 */
import { byteStream } from '@libp2p/utils';
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface';
import { loadPrivnetCipher } from './cipher.ts';
import type { PrivnetCipherOptions } from './cipher.ts';
import { PrivnetConnection } from './connection.ts';
import { PrivnetHandshakeError } from './errors.ts';
import { deriveDirectionKeys, deriveProofs, deriveSwarmKey, NONCE_BYTES } from './kdf.ts';
import { proofLayer, V1_CONFIRM_BYTES, xorLayer } from './layers.ts';
import type { PrivnetLayer } from './layers.ts';
import { IV_BYTES } from './keystream.ts';
import type { KeystreamFactory, PrivnetCipherProvider } from './keystream.ts';

export { loadPrivnetCipher } from './cipher.ts';
export type { PrivnetCipherOptions, PrivnetLog } from './cipher.ts';
export { PrivnetHandshakeError, PrivnetKeyMismatchError, PrivnetVersionError } from './errors.ts';
export type { Keystream, KeystreamFactory, PrivnetCipherProvider } from './keystream.ts';
export { PrivnetConnection } from './connection.ts';

export const PRIVNET_DEFAULT_HANDSHAKE_TIMEOUT_MS = 1000;
export const PRIVNET_DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024;

export interface PrivateNetworkOptions extends PrivnetCipherOptions {
  /** 2 (default): a proof of the psk, then bytes as they are; 1: every byte encrypted a second time (layers.ts) */
  version?: 1 | 2;
  /** How long to wait for the remote's nonce, and then for its key confirmation. Default 1000 ms. */
  handshakeTimeoutMs?: number;
  /**
   * The same bound for connections we accept (each phase: nonce, then key
   * confirmation); short, so a host without the secret holds a handshake slot
   * for about a second. Default: handshakeTimeoutMs.
   */
  inboundHandshakeTimeoutMs?: number;
  /** Inbound handshakes one source address may have in progress at once; more are closed at once. Default 32. */
  maxPendingPerSource?: number;
  /** v1: largest plaintext run encrypted per send (bounds per-send allocation and latency). Default 256 KiB. v2 does not cut sends. */
  maxMessageSize?: number;
  /** Told when a remote fails key confirmation (a different mesh secret), with its address as libp2p has it. */
  onKeyMismatch?: (remoteAddr: MultiaddrConnection['remoteAddr'], direction: MultiaddrConnection['direction']) => void;
}

export interface PrivnetProtector extends ConnectionProtector {
  readonly provider: PrivnetCipherProvider;
  readonly detail: string;
}

/** What libp2p's `connectionProtector` option takes, plus which cipher provider was loaded. */
export type PrivateNetworkFactory = ((components?: unknown) => PrivnetProtector) & {
  readonly provider: PrivnetCipherProvider;
  readonly detail: string;
};

const ZERO_IV = new Uint8Array(IV_BYTES);
/** what a peer that does not even send a nonce most likely is */
const NOT_MESH = 'not an edgemesh node, or its privateNetwork setting differs';

class Protector implements PrivnetProtector {
  readonly [Symbol.toStringTag]: string = 'edgemesh/privnet';
  readonly provider: PrivnetCipherProvider;
  readonly detail: string;

  constructor(
    private readonly swarmKey: Uint8Array,
    private readonly cipher: KeystreamFactory,
    private readonly timeoutMs: number,
    private readonly maxMessageSize: number,
    private readonly version: 1 | 2,
    private readonly onKeyMismatch?: PrivateNetworkOptions['onKeyMismatch'],
    private readonly log?: PrivateNetworkOptions['log'],
    private readonly inbound: { timeoutMs: number; maxPerSource: number; pending: Map<string, number> } = { timeoutMs, maxPerSource: Infinity, pending: new Map() },
  ) {
    this[Symbol.toStringTag] = `edgemesh/privnet-v${version}`;
    this.provider = cipher.provider;
    this.detail = cipher.detail;
  }

  async protect(connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    const maConn = connection as MultiaddrConnection;
    const log = connection.log.newScope('privnet');
    const localNonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const inbound = maConn.direction === 'inbound';
    const timeoutMs = inbound ? this.inbound.timeoutMs : this.timeoutMs;
    // one source may hold only so many of the node's handshake slots
    const source = inbound ? sourceOf(maConn) : '';
    let settled = !inbound;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      const n = (this.inbound.pending.get(source) ?? 1) - 1;
      if (n > 0) this.inbound.pending.set(source, n);
      else this.inbound.pending.delete(source);
    };
    if (inbound) {
      const n = this.inbound.pending.get(source) ?? 0;
      if (n >= this.inbound.maxPerSource) {
        const err = new PrivnetHandshakeError(`${n} handshakes from ${source} already in progress`);
        maConn.abort(err);
        throw err;
      }
      this.inbound.pending.set(source, n + 1);
    }

    let remoteNonce: Uint8Array;
    try {
      remoteNonce = await this.exchangeNonces(maConn, localNonce, timeoutMs, options);
    } catch (err) {
      settle();
      // The transports abort on a failed upgrade too; doing it here keeps a
      // silent or misbehaving client from holding the socket regardless.
      maConn.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    log('exchanged nonces');

    let layer: PrivnetLayer | undefined;
    try {
      layer = this.layer(localNonce, remoteNonce);
      return new PrivnetConnection({
        maConn,
        log,
        layer,
        maxMessageSize: this.maxMessageSize,
        confirmTimeoutMs: timeoutMs,
        onSettled: settle,
        onKeyMismatch: this.onKeyMismatch && (() => this.onKeyMismatch!(maConn.remoteAddr, maConn.direction)),
        onVersionMismatch: (err) => this.log?.('warn', `${err.message} (${maConn.direction} ${maConn.remoteAddr.toString()})`),
      });
    } catch (err) {
      settle();
      layer?.destroy();
      maConn.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  private layer(localNonce: Uint8Array, remoteNonce: Uint8Array): PrivnetLayer {
    const proofs = deriveProofs(this.swarmKey, localNonce, remoteNonce);
    if (this.version === 2) {
      let v1: Uint8Array | undefined;
      // what this remote would send under v1, worked out only when needed
      const v1Confirmation = (): Uint8Array =>
        (v1 ??= this.withV1Keys(localNonce, remoteNonce, (keys) => {
          const rx = this.cipher.create(keys.in, ZERO_IV);
          const confirmation = new Uint8Array(V1_CONFIRM_BYTES);
          rx.xor(confirmation, confirmation);
          rx.destroy();
          return confirmation;
        }));
      return proofLayer(proofs.out, proofs.in, v1Confirmation);
    }
    return this.withV1Keys(localNonce, remoteNonce, (keys) => {
      const tx = this.cipher.create(keys.out, ZERO_IV);
      try {
        return xorLayer(tx, this.cipher.create(keys.in, ZERO_IV), proofs.in);
      } catch (err) {
        tx.destroy();
        throw err;
      }
    });
  }

  /** v1's per-direction keys for this connection, wiped once `use` returns */
  private withV1Keys<T>(localNonce: Uint8Array, remoteNonce: Uint8Array, use: (keys: { out: Uint8Array; in: Uint8Array }) => T): T {
    const keys = deriveDirectionKeys(this.swarmKey, localNonce, remoteNonce);
    try {
      return use(keys);
    } finally {
      keys.out.fill(0);
      keys.in.fill(0);
    }
  }

  private async exchangeNonces(maConn: MultiaddrConnection, localNonce: Uint8Array, timeoutMs: number, options?: AbortOptions): Promise<Uint8Array> {
    // Our own deadline always applies; pnet's only applies when the caller
    // passes no signal, and libp2p always passes one (10 s inbound).
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      ctl.abort(new PrivnetHandshakeError(`no handshake from the other end within ${timeoutMs} ms (${NOT_MESH})`));
    }, timeoutMs);
    const parent = options?.signal;
    const onParentAbort = (): void => ctl.abort(parent?.reason);
    if (parent?.aborted === true) onParentAbort();
    else parent?.addEventListener('abort', onParentAbort, { once: true });

    const bytes = byteStream(maConn);
    try {
      const [result] = await Promise.all([
        bytes.read({ bytes: NONCE_BYTES, signal: ctl.signal }),
        bytes.write(localNonce, { signal: ctl.signal }),
      ]);
      // Copy: the view may share a buffer with ciphertext we later decrypt in place.
      const remote = result.subarray().slice(0, NONCE_BYTES);
      if (remote.byteLength !== NONCE_BYTES) throw new PrivnetHandshakeError('short nonce');
      if (Buffer.from(remote).equals(Buffer.from(localNonce))) throw new PrivnetHandshakeError('remote echoed our nonce');
      bytes.unwrap();
      return remote;
    } catch (err) {
      if (ctl.signal.aborted && ctl.signal.reason instanceof Error) throw ctl.signal.reason;
      if (err instanceof PrivnetHandshakeError) throw err;
      throw new PrivnetHandshakeError(`the other end closed the connection during the handshake (${NOT_MESH})`, { cause: err });
    } finally {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParentAbort);
    }
  }
}

/** the remote host of a connection (its IP), what the per-source cap counts by */
function sourceOf(maConn: MultiaddrConnection): string {
  const c = maConn.remoteAddr.getComponents?.();
  return c?.find((x) => x.name === 'ip4' || x.name === 'ip6')?.value ?? maConn.remoteAddr.toString();
}

/**
 * Connection protector keyed from the mesh secret. Pass the result as
 * libp2p's `connectionProtector`. The cipher provider is chosen (and logged
 * through opts.log) once, here; `.provider` tells which one.
 */
export function createPrivateNetwork(secret: Uint8Array, opts: PrivateNetworkOptions = {}): PrivateNetworkFactory {
  const timeoutMs = opts.handshakeTimeoutMs ?? PRIVNET_DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const maxMessageSize = opts.maxMessageSize ?? PRIVNET_DEFAULT_MAX_MESSAGE_BYTES;
  if (!(timeoutMs > 0)) throw new RangeError('privnet: handshakeTimeoutMs must be > 0');
  if (!Number.isInteger(maxMessageSize) || maxMessageSize < 1) throw new RangeError('privnet: maxMessageSize must be a positive integer');
  const swarmKey = deriveSwarmKey(secret);
  const cipher = loadPrivnetCipher(opts);
  const version = opts.version ?? 2;
  // shared by every protector of this node: handshakes in progress per source
  const inbound = { timeoutMs: opts.inboundHandshakeTimeoutMs ?? timeoutMs, maxPerSource: opts.maxPendingPerSource ?? 32, pending: new Map<string, number>() };
  const factory = (): PrivnetProtector => new Protector(swarmKey, cipher, timeoutMs, maxMessageSize, version, opts.onKeyMismatch, opts.log, inbound);
  return Object.assign(factory, { provider: cipher.provider, detail: cipher.detail });
}
