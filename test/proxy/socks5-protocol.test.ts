import { describe, expect, test } from 'bun:test';
import {
  COMMAND,
  METHOD,
  REPLY,
  buildMethodSelection,
  buildReply,
  formatIPv6,
  parseGreeting,
  parseIPv6,
  parseRequest,
  replyCodeFor,
  selectMethod,
} from '../../src/tunnel/socks5/protocol.ts';

const u8 = (...b: number[]): Uint8Array => Uint8Array.from(b);
const ascii = (s: string): number[] => Array.from(new TextEncoder().encode(s));

describe('SOCKS5 greeting', () => {
  test('no-auth offered: selected', () => {
    const g = parseGreeting(u8(5, 1, 0));
    expect(g).toEqual({ kind: 'ok', consumed: 3, methods: [0] });
    expect(selectMethod([METHOD.USER_PASS, METHOD.NO_AUTH])).toBe(METHOD.NO_AUTH);
    expect(Array.from(buildMethodSelection(METHOD.NO_AUTH))).toEqual([5, 0]);
  });

  test('only other methods: 0xFF', () => {
    const g = parseGreeting(u8(5, 2, 1, 2));
    expect(g.kind === 'ok' && selectMethod(g.methods)).toBe(METHOD.NO_ACCEPTABLE);
  });

  test('incomplete until all methods are in; extra bytes are left unconsumed', () => {
    const all = u8(5, 3, 2, 1, 0, 5, 1);
    for (let i = 0; i < 5; i++) expect(parseGreeting(all.subarray(0, i)).kind).toBe('incomplete');
    expect(parseGreeting(all)).toEqual({ kind: 'ok', consumed: 5, methods: [2, 1, 0] });
  });

  test('wrong version or no methods is an error', () => {
    expect(parseGreeting(u8(4, 1, 0))).toMatchObject({ kind: 'error', reason: expect.stringMatching(/version 4/) });
    expect(parseGreeting(u8(5, 0)).kind).toBe('error');
  });
});

describe('SOCKS5 request', () => {
  test('CONNECT to IPv4', () => {
    expect(parseRequest(u8(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90))).toEqual({
      kind: 'ok',
      consumed: 10,
      command: COMMAND.CONNECT,
      target: { host: '127.0.0.1', port: 8080, atyp: 'ipv4' },
    });
  });

  test('CONNECT to a domain name', () => {
    const name = 'edge2';
    expect(parseRequest(u8(5, 1, 0, 3, name.length, ...ascii(name), 0, 80))).toMatchObject({
      kind: 'ok',
      consumed: 7 + name.length,
      target: { host: 'edge2', port: 80, atyp: 'domain' },
    });
  });

  test('CONNECT to IPv6, formatted per RFC 5952', () => {
    const addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    expect(parseRequest(u8(5, 1, 0, 4, ...addr, 1, 0))).toMatchObject({
      kind: 'ok',
      consumed: 22,
      target: { host: '2001:db8::1', port: 256, atyp: 'ipv6' },
    });
    expect(formatIPv6(new Uint8Array(16))).toBe('::');
    expect(formatIPv6(u8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1))).toBe('::1');
    expect(formatIPv6(u8(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1))).toBe('2001:db8:0:1::1');
    expect(formatIPv6(u8(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1))).toBe('2001:db8::1:0:0:1');
  });

  test('every address type is incomplete until the port is in', () => {
    const reqs = [
      u8(5, 1, 0, 1, 10, 0, 0, 1, 0, 80),
      u8(5, 1, 0, 3, 3, ...ascii('abc'), 0, 80),
      u8(5, 1, 0, 4, ...new Array(16).fill(0), 0, 80),
    ];
    for (const r of reqs) {
      for (let i = 0; i < r.byteLength; i++) expect(parseRequest(r.subarray(0, i)).kind).toBe('incomplete');
      expect(parseRequest(r)).toMatchObject({ kind: 'ok', consumed: r.byteLength });
    }
  });

  test('BIND and UDP ASSOCIATE parse, so the server can answer 0x07', () => {
    expect(parseRequest(u8(5, 2, 0, 1, 0, 0, 0, 0, 0, 0))).toMatchObject({ kind: 'ok', command: COMMAND.BIND });
    expect(parseRequest(u8(5, 3, 0, 1, 0, 0, 0, 0, 0, 0))).toMatchObject({ kind: 'ok', command: COMMAND.UDP_ASSOCIATE });
  });

  test('bad version, bad address type, empty or binary domain are errors', () => {
    expect(parseRequest(u8(4, 1, 0, 80, 127, 0, 0, 1, 0))).toMatchObject({ kind: 'error', reason: expect.stringMatching(/version 4/) });
    expect(parseRequest(u8(5, 1, 0, 5, 0, 0))).toMatchObject({ kind: 'error', reply: REPLY.ADDRESS_TYPE_NOT_SUPPORTED });
    expect(parseRequest(u8(5, 1, 0, 3, 0, 0, 80))).toMatchObject({ kind: 'error', reply: REPLY.GENERAL_FAILURE });
    expect(parseRequest(u8(5, 1, 0, 3, 2, 0x0a, 0x41, 0, 80))).toMatchObject({ kind: 'error', reason: expect.stringMatching(/control/) });
  });
});

describe('SOCKS5 replies', () => {
  test('succeeded with an IPv4 bound address', () => {
    expect(Array.from(buildReply(REPLY.SUCCEEDED, { host: '127.0.0.1', port: 1080 }))).toEqual([5, 0, 0, 1, 127, 0, 0, 1, 4, 56]);
  });

  test('IPv4-mapped IPv6 is sent as IPv4; IPv6 as 16 bytes; unknown as 0.0.0.0:0', () => {
    expect(Array.from(buildReply(0, { host: '::ffff:10.1.2.3', port: 1 }))).toEqual([5, 0, 0, 1, 10, 1, 2, 3, 0, 1]);
    expect(Array.from(buildReply(0, { host: '::1', port: 2 }))).toEqual([5, 0, 0, 4, ...new Array(15).fill(0), 1, 0, 2]);
    expect(Array.from(buildReply(REPLY.HOST_UNREACHABLE))).toEqual([5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
  });

  test('IPv6 text parsing handles :: and a dotted tail', () => {
    expect(formatIPv6(parseIPv6('2001:db8::ff00:42:8329'))).toBe('2001:db8::ff00:42:8329');
    expect(formatIPv6(parseIPv6('::ffff:1.2.3.4'))).toBe('::ffff:102:304');
    expect(formatIPv6(parseIPv6('fe80::1%eth0'))).toBe('fe80::1');
  });

  test('failure reasons map to RFC 1928 codes', () => {
    expect(replyCodeFor('connect ECONNREFUSED 10.0.0.1:80')).toBe(REPLY.CONNECTION_REFUSED);
    expect(replyCodeFor('connect EHOSTUNREACH 10.0.0.1:80')).toBe(REPLY.HOST_UNREACHABLE);
    expect(replyCodeFor('getaddrinfo ENOTFOUND nope')).toBe(REPLY.HOST_UNREACHABLE);
    expect(replyCodeFor('connect ETIMEDOUT 10.0.0.1:80 (no answer in 10000 ms)')).toBe(REPLY.HOST_UNREACHABLE);
    expect(replyCodeFor('connect ENETUNREACH 10.0.0.1:80')).toBe(REPLY.NETWORK_UNREACHABLE);
    expect(replyCodeFor('peer is not authorized as node edge1')).toBe(REPLY.NOT_ALLOWED);
    expect(replyCodeFor('something else')).toBe(REPLY.GENERAL_FAILURE);
  });
});
