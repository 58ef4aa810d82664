import { describe, expect, test } from 'bun:test';
import {
  MAX_REPLY_BYTES,
  MAX_REQUEST_BYTES,
  ProxyHeaderError,
  encodeReply,
  encodeRequest,
  replyDecoder,
  requestDecoder,
} from '../../src/tunnel/proxy/header.ts';
import type { ProxyRequest } from '../../src/tunnel/proxy/header.ts';

const enc = new TextEncoder();
const req: ProxyRequest = { protocol: 'tcp', host: '10.0.0.1', port: 80, fromNode: 'edge1' };

function frame(body: Uint8Array | string): Uint8Array {
  const b = typeof body === 'string' ? enc.encode(body) : body;
  const out = new Uint8Array(2 + b.byteLength);
  out[0] = b.byteLength >> 8;
  out[1] = b.byteLength & 0xff;
  out.set(b, 2);
  return out;
}

function decodeRequest(bytes: Uint8Array): ProxyRequest {
  const r = requestDecoder().push(bytes);
  if (!r) throw new Error('incomplete');
  return r.value;
}

describe('request header', () => {
  test('round trip for tcp and udp, IPv4, IPv6 and hostnames', () => {
    const cases: ProxyRequest[] = [
      req,
      { protocol: 'udp', host: '::1', port: 53, fromNode: 'edge-2.example' },
      { protocol: 'tcp', host: 'echo.demo.svc.cluster.local', port: 65535, fromNode: 'server' },
      { protocol: 'tcp', host: 'x', port: 1, fromNode: 'A1' },
    ];
    for (const c of cases) {
      const r = requestDecoder().push(encodeRequest(c));
      expect(r?.value).toEqual(c);
      expect(r?.rest.byteLength).toBe(0);
    }
  });

  test('wire format is a 2-byte big-endian length and UTF-8 JSON', () => {
    const bytes = encodeRequest(req);
    const len = (bytes[0]! << 8) | bytes[1]!;
    expect(len).toBe(bytes.byteLength - 2);
    expect(JSON.parse(new TextDecoder().decode(bytes.subarray(2)))).toEqual(req);
  });

  test('decodes across every split point and returns the payload that followed', () => {
    const payload = enc.encode('GET / HTTP/1.1\r\n\r\n');
    const all = new Uint8Array([...encodeRequest(req), ...payload]);
    for (let i = 0; i <= all.byteLength; i++) {
      const d = requestDecoder();
      const first = d.push(all.subarray(0, i));
      const got = first ?? d.push(all.subarray(i));
      expect(got?.value).toEqual(req);
      // Bytes after the chunk that completed the header are payload too.
      const rest = first ? new Uint8Array([...first.rest, ...all.subarray(i)]) : got!.rest;
      expect(Array.from(rest)).toEqual(Array.from(payload));
    }
  });

  test('decodes one byte at a time', () => {
    const all = encodeRequest(req);
    const d = requestDecoder();
    let got;
    for (let i = 0; i < all.byteLength; i++) {
      got = d.push(all.subarray(i, i + 1));
      if (i < all.byteLength - 1) expect(got).toBeUndefined();
    }
    expect(got?.value).toEqual(req);
  });

  test('an oversized declared length is rejected from the two length bytes alone', () => {
    for (const len of [MAX_REQUEST_BYTES + 1, 0xffff]) {
      const d = requestDecoder();
      expect(() => d.push(Uint8Array.of(len >> 8, len & 0xff))).toThrow(/too large: declared \d+ bytes, limit 1024/);
    }
    // Split length bytes: rejected as soon as the second arrives.
    const d = requestDecoder();
    expect(d.push(Uint8Array.of(0xff))).toBeUndefined();
    expect(() => d.push(Uint8Array.of(0xff))).toThrow(ProxyHeaderError);
    // The limit is configurable.
    expect(() => requestDecoder(16).push(frame(JSON.stringify(req)))).toThrow(/limit 16/);
  });

  test('exactly the limit is accepted', () => {
    const host = 'a'.repeat(50);
    const base = JSON.stringify({ ...req, host, pad: '' });
    const body = JSON.stringify({ ...req, host, pad: 'p'.repeat(MAX_REQUEST_BYTES - base.length) });
    expect(body.length).toBe(MAX_REQUEST_BYTES);
    expect(requestDecoder().push(frame(body))?.value.host).toBe(host);
  });

  const bad: [string, string | Uint8Array, RegExp][] = [
    ['empty body', '', /empty request header/],
    ['not JSON', '{"protocol":', /not valid JSON/],
    ['invalid UTF-8', Uint8Array.of(0x7b, 0xff, 0x7d), /not valid UTF-8/],
    ['array', '[1,2]', /must be a JSON object/],
    ['null', 'null', /must be a JSON object/],
    ['bad protocol', JSON.stringify({ ...req, protocol: 'sctp' }), /protocol must be "tcp" or "udp", got "sctp"/],
    ['missing protocol', JSON.stringify({ ...req, protocol: undefined }), /protocol must be/],
    ['port 0', JSON.stringify({ ...req, port: 0 }), /port must be an integer in 1..65535, got 0/],
    ['port 65536', JSON.stringify({ ...req, port: 65536 }), /port must be/],
    ['port 1.5', JSON.stringify({ ...req, port: 1.5 }), /port must be/],
    ['port as string', JSON.stringify({ ...req, port: '80' }), /port must be/],
    ['empty host', JSON.stringify({ ...req, host: '' }), /host must be a non-empty string/],
    ['long host', JSON.stringify({ ...req, host: 'a'.repeat(254) }), /at most 253/],
    ['host with spaces', JSON.stringify({ ...req, host: 'a b' }), /neither an IP address nor a hostname/],
    ['host with port', JSON.stringify({ ...req, host: '10.0.0.1:80' }), /neither an IP address nor a hostname/],
    ['bad fromNode', JSON.stringify({ ...req, fromNode: 'edge 1' }), /fromNode must be a DNS name/],
    ['empty fromNode', JSON.stringify({ ...req, fromNode: '' }), /fromNode must be a DNS name/],
    ['fromNode with dash at end', JSON.stringify({ ...req, fromNode: 'edge-' }), /fromNode/],
  ];
  for (const [name, body, message] of bad) {
    test(`rejects ${name} with a clear message`, () => {
      expect(() => decodeRequest(frame(body))).toThrow(message);
    });
  }

  test('unknown fields are ignored (forward compatible)', () => {
    expect(decodeRequest(frame(JSON.stringify({ ...req, future: 1 })))).toEqual(req);
  });

  test('encodeRequest refuses to send an invalid request', () => {
    expect(() => encodeRequest({ ...req, port: 0 })).toThrow(ProxyHeaderError);
  });
});

describe('reply header', () => {
  test('round trip ok and error', () => {
    expect(replyDecoder().push(encodeReply({ ok: true }))?.value).toEqual({ ok: true });
    const err = { ok: false as const, error: 'connect ECONNREFUSED 10.0.0.1:80' };
    expect(replyDecoder().push(encodeReply(err))?.value).toEqual(err);
  });

  test('a reply followed by payload returns the payload', () => {
    const all = new Uint8Array([...encodeReply({ ok: true }), 1, 2, 3]);
    expect(Array.from(replyDecoder().push(all)!.rest)).toEqual([1, 2, 3]);
  });

  test('long error reasons are truncated to fit the cap', () => {
    const bytes = encodeReply({ ok: false, error: 'é'.repeat(5000) });
    expect(bytes.byteLength - 2).toBeLessThanOrEqual(MAX_REPLY_BYTES);
    const r = replyDecoder().push(bytes)?.value;
    expect(r?.ok).toBe(false);
    expect(r && !r.ok && r.error.endsWith('...')).toBe(true);
  });

  test('malformed replies are rejected', () => {
    expect(() => replyDecoder().push(frame('{"ok":false}'))).toThrow(/reply must be/);
    expect(() => replyDecoder().push(frame('{"ok":"yes"}'))).toThrow(/reply must be/);
  });
});
