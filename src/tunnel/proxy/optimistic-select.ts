/**
 * multistream-select without the wait. libp2p negotiates the protocol of
 * every new stream before the first byte may go (one round trip through the
 * tunnel; the interface's `negotiateFully: false` is not implemented in the
 * installed libp2p). Every agent speaks the proxy protocol, so the opener
 * sends the multistream header, the protocol and its proxy request in one
 * write, and checks the two acknowledgements in front of the proxy reply:
 * a new proxied connection costs one tunnel round trip instead of two.
 * Our agents recognise these bytes without libp2p's negotiation
 * (direct-accept.ts); a stock libp2p receiver works too (`mss.handle` keeps
 * the bytes that follow the protocol line for the handler).
 *
 * Wire format (multistream-select 1.0): each message is an unsigned varint
 * length followed by that many bytes, ending in "\n".
 */
import { concat } from './bytes.ts';
import type { Decoded } from './header.ts';

export const MULTISTREAM_ID = '/multistream/1.0.0';
/** the longest protocol line multistream-select accepts */
const MAX_LINE = 1024;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Uint8Array.from(out);
}

function line(text: string): Uint8Array {
  const body = utf8.encode(`${text}\n`);
  return concat(varint(body.byteLength), body);
}

/** the header and protocol lines, per protocol: built once, sent with every new stream */
const selections = new Map<string, Uint8Array>();

/** the multistream header and protocol lines, followed by `payload` (a new array) */
export function selectAndSend(protocol: string, payload: Uint8Array): Uint8Array {
  let lines = selections.get(protocol);
  if (!lines) selections.set(protocol, (lines = concat(line(MULTISTREAM_ID), line(protocol))));
  const out = new Uint8Array(lines.byteLength + payload.byteLength);
  out.set(lines);
  out.set(payload, lines.byteLength);
  return out;
}

export class ProtocolRefusedError extends Error {
  override name = 'ProtocolRefusedError';
}

/**
 * Consumes the two acknowledgement lines ("/multistream/1.0.0", then the
 * protocol itself; anything else, such as "na", is a refusal), then hands
 * every later byte to `inner`, the decoder of the protocol's own reply.
 */
export class AfterSelectDecoder<T> {
  #buf = new Uint8Array(0);
  #acked = 0;

  constructor(
    private readonly protocol: string,
    private readonly inner: { push(chunk: Uint8Array): Decoded<T> | undefined },
  ) {}

  push(chunk: Uint8Array): Decoded<T> | undefined {
    if (this.#acked < 2) {
      const joined = new Uint8Array(this.#buf.byteLength + chunk.byteLength);
      joined.set(this.#buf);
      joined.set(chunk, this.#buf.byteLength);
      let pos = 0;
      while (this.#acked < 2) {
        const got = readLine(joined, pos);
        if (!got) break;
        const want = this.#acked === 0 ? MULTISTREAM_ID : this.protocol;
        if (got.text !== want) throw new ProtocolRefusedError(`the other end answered "${got.text}" to ${want}`);
        this.#acked++;
        pos = got.end;
      }
      if (this.#acked < 2) {
        this.#buf = joined.slice(pos);
        return undefined;
      }
      this.#buf = new Uint8Array(0);
      chunk = joined.subarray(pos);
      if (chunk.byteLength === 0) return undefined;
    }
    return this.inner.push(chunk);
  }
}

/** one length-prefixed line at `pos`, or undefined when incomplete */
function readLine(buf: Uint8Array, pos: number): { text: string; end: number } | undefined {
  let len = 0;
  let shift = 0;
  let p = pos;
  for (;;) {
    if (p >= buf.byteLength) return undefined;
    const b = buf[p++]!;
    len |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) break;
    shift += 7;
    if (shift > 14) throw new ProtocolRefusedError('multistream length prefix too long');
  }
  if (len === 0 || len > MAX_LINE) throw new ProtocolRefusedError(`multistream message of ${len} bytes`);
  if (p + len > buf.byteLength) return undefined;
  const body = buf.subarray(p, p + len);
  if (body[len - 1] !== 0x0a) throw new ProtocolRefusedError('multistream message without a newline');
  return { text: utf8Decoder.decode(body.subarray(0, len - 1)), end: p + len };
}
