/** SOCKS5 front door in front of the proxy protocol, driven by curl and by a raw client. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { Server } from 'bun';
import { startSocks5 } from '../../src/tunnel/socks5/server.ts';
import type { Socks5Server } from '../../src/tunnel/socks5/server.ts';
import { REPLY } from '../../src/tunnel/socks5/protocol.ts';
import { createLogger } from '../../src/log.ts';
import { closedPort, collect, connectTo, startPair } from './fixtures.ts';
import type { Pair } from './fixtures.ts';

let pair: Pair;
let http: Server<undefined>;
let socks: Socks5Server;
const logs: string[] = [];

beforeAll(async () => {
  pair = await startPair();
  http = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: (req) => new Response(`hello from edge2 ${new URL(req.url).pathname}`) });
  socks = await startSocks5({
    host: '127.0.0.1',
    port: 0,
    log: createLogger('socks5', 'debug', { write: (l) => void logs.push(l) }),
    // "edge2" is a node name: carry the connection to B's agent, which dials 127.0.0.1:port there.
    route: async (target) =>
      target.host === 'edge2'
        ? { kind: 'stream', open: () => pair.open({ protocol: 'tcp', host: '127.0.0.1', port: target.port }) }
        : { kind: 'error', reply: REPLY.HOST_UNREACHABLE, reason: `unknown node ${target.host}` },
  });
});
afterAll(async () => {
  await socks.stop();
  await http.stop(true);
  await pair.stop();
});

async function curl(url: string): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const proc = Bun.spawn(['curl', '-sS', '--max-time', '10', '--noproxy', '', '--socks5-hostname', `127.0.0.1:${socks.port}`, url], {
    stdout: 'pipe',
    stderr: 'pipe',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, // no *_proxy variables from the caller
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr, ms: Date.now() - started };
}

describe('SOCKS5 front door', () => {
  test('curl reaches an HTTP server on B by node name', async () => {
    const r = await curl(`http://edge2:${http.port}/ping`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hello from edge2 /ping');
  }, 15_000);

  test('an unknown name gets reply 0x04 and curl fails fast', async () => {
    const r = await curl('http://nowhere:80/');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/SOCKS5|socks/i);
    expect(r.ms).toBeLessThan(3_000);
    expect(logs.some((l) => l.includes('connect failed') && l.includes('unknown node nowhere'))).toBe(true);
  }, 15_000);

  test('a refused target on B gets reply 0x05', async () => {
    const port = await closedPort();
    const c = await connectTo(socks.port);
    const outcome = collect(c, 5_000, true);
    c.write(Uint8Array.of(5, 1, 0));
    c.write(Uint8Array.of(5, 1, 0, 3, 5, ...new TextEncoder().encode('edge2'), port >> 8, port & 0xff));
    const { data } = await outcome;
    expect(Array.from(data.subarray(0, 2))).toEqual([5, 0]);
    expect(data[3]).toBe(REPLY.CONNECTION_REFUSED);
  });

  test('greeting and CONNECT in one write, with optimistic payload, still work', async () => {
    const c = await connectTo(socks.port);
    const outcome = collect(c, 5_000, true);
    const host = new TextEncoder().encode('edge2');
    const request = `GET /raw HTTP/1.1\r\nHost: edge2\r\nConnection: close\r\n\r\n`;
    c.write(Uint8Array.of(5, 1, 0, 5, 1, 0, 3, host.length, ...host, http.port! >> 8, http.port! & 0xff, ...new TextEncoder().encode(request)));
    const { data, error } = await outcome;
    expect(error).toBeUndefined();
    expect(Array.from(data.subarray(0, 3))).toEqual([5, 0, 5]); // method reply, then reply header
    expect(data[3]).toBe(REPLY.SUCCEEDED);
    expect(Array.from(data.subarray(4, 10))).toEqual([0, 1, 127, 0, 0, 1]); // RSV, IPv4 bound address
    expect(data.subarray(12).toString()).toMatch(/^HTTP\/1\.1 200[\s\S]*hello from edge2 \/raw$/);
  });

  test('only no-auth is offered: other methods get 0xFF', async () => {
    const c = await connectTo(socks.port);
    const outcome = collect(c, 5_000, true);
    c.write(Uint8Array.of(5, 1, 2)); // username/password only
    expect(Array.from((await outcome).data)).toEqual([5, 0xff]);
  });

  test('BIND and UDP ASSOCIATE get 0x07', async () => {
    for (const cmd of [2, 3]) {
      const c = await connectTo(socks.port);
      const outcome = collect(c, 5_000, true);
      c.write(Uint8Array.of(5, 1, 0, 5, cmd, 0, 1, 127, 0, 0, 1, 0, 80));
      const { data } = await outcome;
      expect(Array.from(data.subarray(0, 4))).toEqual([5, 0, 5, REPLY.COMMAND_NOT_SUPPORTED]);
    }
  });

  test('a malformed greeting just closes the connection', async () => {
    const c = await connectTo(socks.port);
    const outcome = collect(c, 5_000, true);
    c.write(Uint8Array.of(4, 1, 0, 80, 127, 0, 0, 1, 0)); // SOCKS4
    expect((await outcome).data.length).toBe(0);
    expect(socks.connections).toBeLessThanOrEqual(1);
  });
});
