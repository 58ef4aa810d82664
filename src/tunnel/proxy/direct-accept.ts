/**
 * Inbound proxy streams without libp2p's generic protocol negotiation.
 *
 * For every inbound stream libp2p runs multistream-select's handler (an async
 * line reader, a write per acknowledgement, a timeout signal), then counts the
 * connection's streams of that protocol and merges the protocol into the peer
 * store: a large share of a new proxied connection's first byte. Our proxy
 * openers send the exact bytes "/multistream/1.0.0\n" + "<protocol>\n" and
 * their request in one frame, so we recognise those bytes at the start of a
 * new stream, answer with the same two lines (held back until the proxy
 * reply when the request is already behind them: one frame, see
 * held-acks.ts) and hand the stream to the proxy handler directly. Anything
 * else (another protocol, "ls", a different framing) gets its bytes put back
 * and goes to libp2p's own handler, unchanged.
 *
 * Installed per connection, by swapping the connection's 'stream' listener on
 * its muxer (libp2p internals, checked; without them the stock path stays).
 */
import type { Connection, Stream, StreamHandler, StreamMessageEvent } from '@libp2p/interface';
import { concat, flatten } from './bytes.ts';
import { holdAcks } from './held-acks.ts';
import { selectAndSend } from './optimistic-select.ts';

/** how long a new stream may take to send its protocol lines (libp2p's own default) */
export const NEGOTIATION_TIMEOUT_MS = 10_000;

type StreamEvent = CustomEvent<Stream>;
interface Internals {
  muxer?: { addEventListener(t: 'stream', l: (e: StreamEvent) => void): void; removeEventListener(t: 'stream', l: (e: StreamEvent) => void): void };
  onIncomingStream?: (e: StreamEvent) => Promise<void>;
}

const installed = new WeakSet<Connection>();

export interface DirectAcceptStats {
  direct: number;
  stock: number;
}

/**
 * Takes a recognised stream with the bytes that followed the protocol lines
 * (the request, usually): handing them over directly saves putting them back
 * into the stream and reading them again through its events.
 */
export type FirstBytesHandler = (stream: Stream, connection: Connection, first: Uint8Array) => void;

/**
 * false when the connection does not look as expected (it keeps libp2p's
 * path). `withFirstBytes`, when given, takes streams that came with bytes
 * behind the protocol lines; the others go to `handler`.
 */
export function acceptDirectly(conn: Connection, protocol: string, handler: StreamHandler, stats?: DirectAcceptStats, withFirstBytes?: FirstBytesHandler): boolean {
  if (installed.has(conn)) return true;
  const c = conn as unknown as Internals;
  const stock = c.onIncomingStream;
  if (!c.muxer || typeof stock !== 'function') return false;
  const expected = selectAndSend(protocol, new Uint8Array(0));
  c.muxer.removeEventListener('stream', stock);
  c.muxer.addEventListener('stream', (evt) => {
    const stream = evt.detail;
    if (stream.protocol !== '' || stream.status !== 'open') return void stock(evt);
    route(stream, expected, {
      direct: (rest) => {
        if (stats) stats.direct++;
        stream.protocol = protocol;
        if (rest.byteLength > 0) {
          holdAcks(stream, expected);
          if (withFirstBytes) return withFirstBytes(stream, conn, rest);
          stream.unshift(rest);
        } else {
          stream.send(expected);
        }
        void handler(stream, conn);
      },
      stock: (seen) => {
        if (stats) stats.stock++;
        if (seen.byteLength > 0) stream.unshift(seen);
        void stock(evt);
      },
    });
  });
  installed.add(conn);
  return true;
}

/** reads the stream's first bytes until they match `expected` in full or stop matching */
function route(stream: Stream, expected: Uint8Array, to: { direct(rest: Uint8Array): void; stock(seen: Uint8Array): void }): void {
  let seen = new Uint8Array(0);
  const done = (): void => {
    clearTimeout(timer);
    stream.removeEventListener('message', onMessage);
    stream.removeEventListener('close', onClose);
  };
  const onMessage = (evt: StreamMessageEvent): void => {
    const chunk = flatten(evt.data);
    const joined = seen.byteLength === 0 ? chunk : concat(seen, chunk);
    const n = Math.min(joined.byteLength, expected.byteLength);
    for (let i = 0; i < n; i++) {
      if (joined[i] !== expected[i]) {
        done();
        return to.stock(joined);
      }
    }
    if (joined.byteLength < expected.byteLength) {
      seen = joined.slice();
      return;
    }
    done();
    to.direct(joined.slice(expected.byteLength));
  };
  const onClose = (): void => done();
  const timer = setTimeout(() => {
    done();
    stream.abort(new Error(`no protocol chosen within ${NEGOTIATION_TIMEOUT_MS} ms`));
  }, NEGOTIATION_TIMEOUT_MS);
  stream.addEventListener('message', onMessage);
  stream.addEventListener('close', onClose);
}
