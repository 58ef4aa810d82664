/**
 * Proxy protocol headers (pure). The opener sends one request, the receiver
 * answers one reply; each is `[u16 BE length][UTF-8 JSON]`. Whatever follows a
 * header on the stream is payload, so the decoder hands those bytes back.
 */
import { isIP } from 'node:net';
import { FrameReader, FrameTooLargeError, encodeFrame } from './frame.ts';

/** Requests are tiny; the cap keeps a hostile peer from making us buffer. */
export const MAX_REQUEST_BYTES = 1024;
/** Replies carry an error text at most; longer reasons are truncated to fit. */
export const MAX_REPLY_BYTES = 1024;
export const MAX_HOST_LENGTH = 253;

export type ProxyTransport = 'tcp' | 'udp';

export interface ProxyRequest {
  protocol: ProxyTransport;
  /** IP address (v4, or v6 without brackets) or hostname, resolved by the receiver. */
  host: string;
  port: number;
  /** Node name of the opener, checked by the receiver against the peer's identity. */
  fromNode: string;
}

export type ProxyReply = { ok: true } | { ok: false; error: string };

export class ProxyHeaderError extends Error {
  override name = 'ProxyHeaderError';
}

// RFC 1123 labels; '_' is tolerated in target hosts (service-style names), not in node names.
const HOST_RE = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
const NODE_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks a decoded request. Unknown fields are ignored so a newer opener can
 * add optional fields without breaking older receivers.
 */
export function validateRequest(v: unknown): ProxyRequest {
  if (!isRecord(v)) throw new ProxyHeaderError('request must be a JSON object');
  const { protocol, host, port, fromNode } = v;
  if (protocol !== 'tcp' && protocol !== 'udp') throw new ProxyHeaderError(`protocol must be "tcp" or "udp", got ${describe(protocol)}`);
  if (typeof host !== 'string' || host.length === 0 || host.length > MAX_HOST_LENGTH) {
    throw new ProxyHeaderError(`host must be a non-empty string of at most ${MAX_HOST_LENGTH} characters`);
  }
  if (isIP(host) === 0 && !HOST_RE.test(host)) throw new ProxyHeaderError(`host is neither an IP address nor a hostname: ${describe(host)}`);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ProxyHeaderError(`port must be an integer in 1..65535, got ${describe(port)}`);
  }
  if (typeof fromNode !== 'string' || !NODE_RE.test(fromNode)) {
    throw new ProxyHeaderError(`fromNode must be a DNS name (letters, digits, '-', '.'; at most 253 characters), got ${describe(fromNode)}`);
  }
  return { protocol, host, port, fromNode };
}

export function validateReply(v: unknown): ProxyReply {
  if (!isRecord(v)) throw new ProxyHeaderError('reply must be a JSON object');
  if (v.ok === true) return { ok: true };
  if (v.ok === false && typeof v.error === 'string') return { ok: false, error: v.error };
  throw new ProxyHeaderError('reply must be {"ok":true} or {"ok":false,"error":"..."}');
}

function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 64 ? `${s.slice(0, 61)}...` : s;
}

export function encodeRequest(req: ProxyRequest): Uint8Array {
  const checked = validateRequest(req);
  const body = utf8.encode(JSON.stringify(checked));
  if (body.byteLength > MAX_REQUEST_BYTES) throw new ProxyHeaderError(`request of ${body.byteLength} bytes exceeds ${MAX_REQUEST_BYTES}`);
  return encodeFrame(body);
}

export function encodeReply(reply: ProxyReply): Uint8Array {
  if (reply.ok) return encodeFrame(utf8.encode('{"ok":true}'));
  let error = reply.error;
  let body = utf8.encode(JSON.stringify({ ok: false, error }));
  // Truncating by characters can only shrink the JSON; a few rounds suffice.
  while (body.byteLength > MAX_REPLY_BYTES) {
    error = error.slice(0, Math.max(0, error.length - (body.byteLength - MAX_REPLY_BYTES) - 3)) + '...';
    body = utf8.encode(JSON.stringify({ ok: false, error }));
  }
  return encodeFrame(body);
}

export interface Decoded<T> {
  value: T;
  /** Bytes of the chunk that followed the header: payload, not header. */
  rest: Uint8Array;
}

/** Incremental decoder of one header; feed chunks until it returns a value. */
export class HeaderDecoder<T> {
  #reader: FrameReader;
  #done = false;

  constructor(
    private readonly what: string,
    maxBytes: number,
    private readonly validate: (v: unknown) => T,
  ) {
    this.#reader = new FrameReader(maxBytes);
  }

  /** Returns undefined until the header is complete; throws ProxyHeaderError on a bad one. */
  push(chunk: Uint8Array): Decoded<T> | undefined {
    if (this.#done) throw new Error(`${this.what} header already decoded`);
    let step;
    try {
      step = this.#reader.read(chunk);
    } catch (err) {
      if (err instanceof FrameTooLargeError) {
        throw new ProxyHeaderError(`${this.what} header too large: declared ${err.declared} bytes, limit ${err.limit}`);
      }
      throw err;
    }
    if (step.frame === undefined) return undefined;
    this.#done = true;
    return { value: this.validate(parseJson(this.what, step.frame)), rest: chunk.subarray(step.offset) };
  }
}

function parseJson(what: string, body: Uint8Array): unknown {
  if (body.byteLength === 0) throw new ProxyHeaderError(`empty ${what} header`);
  let text: string;
  try {
    text = strictUtf8.decode(body);
  } catch {
    throw new ProxyHeaderError(`${what} header is not valid UTF-8`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ProxyHeaderError(`${what} header is not valid JSON`);
  }
}

export function requestDecoder(maxBytes = MAX_REQUEST_BYTES): HeaderDecoder<ProxyRequest> {
  return new HeaderDecoder('request', maxBytes, validateRequest);
}

export function replyDecoder(maxBytes = MAX_REPLY_BYTES): HeaderDecoder<ProxyReply> {
  return new HeaderDecoder('reply', maxBytes, validateReply);
}
