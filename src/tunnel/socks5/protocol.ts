/**
 * SOCKS5 wire format (RFC 1928), pure. Parsers take everything received so
 * far and say "incomplete", "error", or what they found plus how many bytes
 * it took, so the socket code can feed them arbitrary chunks.
 */
import { isIP } from 'node:net';

export const SOCKS_VERSION = 0x05;

export const METHOD = { NO_AUTH: 0x00, GSSAPI: 0x01, USER_PASS: 0x02, NO_ACCEPTABLE: 0xff } as const;
export const COMMAND = { CONNECT: 0x01, BIND: 0x02, UDP_ASSOCIATE: 0x03 } as const;
export const ATYP = { IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 } as const;
export const REPLY = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

export type AddressType = 'ipv4' | 'ipv6' | 'domain';

export interface Socks5Target {
  /** Dotted IPv4, RFC 5952 IPv6, or the domain name as sent. */
  host: string;
  port: number;
  atyp: AddressType;
}

export type Parse<T> =
  | { kind: 'incomplete' }
  | { kind: 'error'; reason: string; /** reply to send before closing, if the protocol allows one */ reply?: number }
  | ({ kind: 'ok'; consumed: number } & T);

export function parseGreeting(buf: Uint8Array): Parse<{ methods: number[] }> {
  if (buf.byteLength < 2) return { kind: 'incomplete' };
  if (buf[0] !== SOCKS_VERSION) return { kind: 'error', reason: `unsupported SOCKS version ${buf[0]}` };
  const n = buf[1]!;
  if (n === 0) return { kind: 'error', reason: 'greeting offers no authentication methods' };
  if (buf.byteLength < 2 + n) return { kind: 'incomplete' };
  return { kind: 'ok', consumed: 2 + n, methods: Array.from(buf.subarray(2, 2 + n)) };
}

/** The server's choice: username/password when it requires one (RFC 1929), else "no authentication". */
export function selectMethod(methods: readonly number[], requireUserPass = false): number {
  const want = requireUserPass ? METHOD.USER_PASS : METHOD.NO_AUTH;
  return methods.includes(want) ? want : METHOD.NO_ACCEPTABLE;
}

/** RFC 1929 sub-negotiation: VER=1, ULEN, UNAME, PLEN, PASSWD */
export function parseUserPass(buf: Uint8Array): Parse<{ username: Uint8Array; password: Uint8Array }> {
  if (buf.byteLength < 2) return { kind: 'incomplete' };
  if (buf[0] !== 0x01) return { kind: 'error', reason: `unsupported username/password version ${buf[0]}` };
  const ulen = buf[1]!;
  if (buf.byteLength < 3 + ulen) return { kind: 'incomplete' };
  const plen = buf[2 + ulen]!;
  if (buf.byteLength < 3 + ulen + plen) return { kind: 'incomplete' };
  return { kind: 'ok', consumed: 3 + ulen + plen, username: buf.subarray(2, 2 + ulen), password: buf.subarray(3 + ulen, 3 + ulen + plen) };
}

/** RFC 1929 status: 0 = success, anything else = failure (the connection is then closed) */
export function buildUserPassStatus(ok: boolean): Uint8Array {
  return Uint8Array.of(0x01, ok ? 0x00 : 0x01);
}

export function buildMethodSelection(method: number): Uint8Array {
  return Uint8Array.of(SOCKS_VERSION, method);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses a request. Any command is returned (the caller answers 0x07 for the
 * ones it does not support); an unknown address type is an error with reply 0x08.
 */
export function parseRequest(buf: Uint8Array): Parse<{ command: number; target: Socks5Target }> {
  if (buf.byteLength < 4) return { kind: 'incomplete' };
  if (buf[0] !== SOCKS_VERSION) return { kind: 'error', reason: `unsupported SOCKS version ${buf[0]} in request` };
  const command = buf[1]!;
  // buf[2] is RSV; clients in the wild do not all send 0, so it is ignored.
  const atypByte = buf[3]!;
  let host: string;
  let atyp: AddressType;
  let pos = 4;
  if (atypByte === ATYP.IPV4) {
    if (buf.byteLength < pos + 4 + 2) return { kind: 'incomplete' };
    host = Array.from(buf.subarray(pos, pos + 4)).join('.');
    atyp = 'ipv4';
    pos += 4;
  } else if (atypByte === ATYP.IPV6) {
    if (buf.byteLength < pos + 16 + 2) return { kind: 'incomplete' };
    host = formatIPv6(buf.subarray(pos, pos + 16));
    atyp = 'ipv6';
    pos += 16;
  } else if (atypByte === ATYP.DOMAIN) {
    if (buf.byteLength < pos + 1) return { kind: 'incomplete' };
    const len = buf[pos]!;
    if (len === 0) return { kind: 'error', reason: 'empty domain name', reply: REPLY.GENERAL_FAILURE };
    if (buf.byteLength < pos + 1 + len + 2) return { kind: 'incomplete' };
    try {
      host = utf8.decode(buf.subarray(pos + 1, pos + 1 + len));
    } catch {
      return { kind: 'error', reason: 'domain name is not valid UTF-8', reply: REPLY.GENERAL_FAILURE };
    }
    if (/[\s\x00-\x1f\x7f]/.test(host)) return { kind: 'error', reason: 'domain name contains whitespace or control characters', reply: REPLY.GENERAL_FAILURE };
    atyp = 'domain';
    pos += 1 + len;
  } else {
    return { kind: 'error', reason: `unsupported address type ${atypByte}`, reply: REPLY.ADDRESS_TYPE_NOT_SUPPORTED };
  }
  const port = (buf[pos]! << 8) | buf[pos + 1]!;
  return { kind: 'ok', consumed: pos + 2, command, target: { host, port, atyp } };
}

/**
 * A reply. `bound` is the server's address for the connection (BND.ADDR /
 * BND.PORT); IPv4-mapped IPv6 is sent as IPv4; anything else unknown as 0.0.0.0:0.
 */
export function buildReply(code: number, bound?: { host: string; port: number }): Uint8Array {
  let host = bound?.host ?? '0.0.0.0';
  const port = bound?.port ?? 0;
  if (host.toLowerCase().startsWith('::ffff:') && isIP(host.slice(7)) === 4) host = host.slice(7);
  let addr: Uint8Array;
  let atyp: number;
  if (isIP(host) === 4) {
    addr = Uint8Array.from(host.split('.').map(Number));
    atyp = ATYP.IPV4;
  } else if (isIP(host) === 6) {
    addr = parseIPv6(host);
    atyp = ATYP.IPV6;
  } else {
    addr = new Uint8Array(4);
    atyp = ATYP.IPV4;
  }
  const out = new Uint8Array(4 + addr.byteLength + 2);
  out.set([SOCKS_VERSION, code, 0x00, atyp]);
  out.set(addr, 4);
  out[4 + addr.byteLength] = port >>> 8;
  out[5 + addr.byteLength] = port & 0xff;
  return out;
}

/**
 * Maps the reason a target could not be reached (a proxy reply text or a
 * local error message) to a SOCKS reply code.
 */
export function replyCodeFor(reason: string): number {
  if (/\bECONNREFUSED\b/.test(reason)) return REPLY.CONNECTION_REFUSED;
  if (/\bENETUNREACH\b/.test(reason)) return REPLY.NETWORK_UNREACHABLE;
  if (/\b(EHOSTUNREACH|EHOSTDOWN|ENOTFOUND|EAI_AGAIN|EAI_NONAME|ETIMEDOUT)\b/.test(reason)) return REPLY.HOST_UNREACHABLE;
  if (/not authorized/i.test(reason)) return REPLY.NOT_ALLOWED;
  return REPLY.GENERAL_FAILURE;
}

/** RFC 5952 text form: lowercase, no leading zeros, longest zero run (≥ 2 groups) as "::". */
export function formatIPv6(bytes: Uint8Array): string {
  if (bytes.byteLength !== 16) throw new RangeError('IPv6 address must be 16 bytes');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Parses IPv6 text (with "::" and an optional dotted-quad tail) to 16 bytes. */
export function parseIPv6(text: string): Uint8Array {
  if (isIP(text) !== 6) throw new RangeError(`not an IPv6 address: ${text}`);
  let s = text.replace(/%.*$/, ''); // zone index has no wire form
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((h) => parseInt(h, 16)) : []);
  const h = parse(head);
  const t = parse(tail);
  const groups = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >>> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}
