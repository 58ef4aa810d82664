/** SOCKS5 front door: username/password (RFC 1929) when configured, and a cap on clients. Driven by curl. */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import type { Server } from 'bun';
import { connect } from 'node:net';
import { startSocks5, type Socks5Server } from '../../src/tunnel/socks5/server.ts';
import { createLogger } from '../../src/log.ts';
import { connectTo } from './fixtures.ts';

let http: Server<undefined>;
let socks: Socks5Server;
const refused: string[] = [];
const enc = (s: string) => new TextEncoder().encode(s);

beforeAll(async () => {
  http = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response('backend') });
  socks = await startSocks5({
    host: '127.0.0.1',
    port: 0,
    log: createLogger('socks5', 'error'),
    credentials: { username: enc('ops'), password: enc('s3cret pass') },
    maxConnections: 3,
    onRefused: (why) => void refused.push(why),
    route: async (target) => ({ kind: 'socket', open: () => connectTo(Number(http.port)) as never }),
  });
});
afterAll(async () => {
  await socks.stop();
  await http.stop(true);
});

async function curl(proxy: string): Promise<{ code: number; stdout: string }> {
  const proc = Bun.spawn(['curl', '-sS', '--max-time', '5', '--noproxy', '', '--socks5-hostname', proxy, `http://svc:${http.port}/`], {
    stdout: 'pipe',
    stderr: 'pipe',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { code, stdout };
}

test('the right username and password get through; a wrong one or none at all do not', async () => {
  expect(await curl(`ops:s3cret%20pass@127.0.0.1:${socks.port}`)).toEqual({ code: 0, stdout: 'backend' });
  expect((await curl(`ops:wrong@127.0.0.1:${socks.port}`)).code).not.toBe(0);
  expect((await curl(`127.0.0.1:${socks.port}`)).code).not.toBe(0);
  expect(refused).toEqual(['credentials']);
}, 20_000);

test('past maxConnections a client is closed at once and counted; the others are unaffected', async () => {
  refused.length = 0;
  const idle = await Promise.all(
    [0, 1, 2].map(
      () =>
        new Promise<ReturnType<typeof connect>>((resolve) => {
          const s = connect({ host: '127.0.0.1', port: socks.port }, () => resolve(s));
        }),
    ),
  );
  await Bun.sleep(50);
  const extra = connect({ host: '127.0.0.1', port: socks.port });
  const closed = await new Promise<boolean>((resolve) => {
    extra.on('close', () => resolve(true));
    extra.on('error', () => {});
    setTimeout(() => resolve(false), 2000);
  });
  expect(closed).toBe(true);
  expect(refused).toEqual(['capacity']);
  expect(socks.connections).toBe(3);
  for (const s of idle) s.destroy();
  await Bun.sleep(50);
  expect(await curl(`ops:s3cret%20pass@127.0.0.1:${socks.port}`)).toEqual({ code: 0, stdout: 'backend' });
}, 20_000);
