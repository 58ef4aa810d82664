/** UDP sessions through `/edgemesh/proxy/1.0.0` between two real libp2p nodes on loopback. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { ProxyRemoteError, udpSession } from '../../src/tunnel/proxy/client.ts';
import type { UdpCloseReason } from '../../src/tunnel/proxy/udp-session.ts';
import { startPair, waitFor } from './fixtures.ts';
import type { Pair } from './fixtures.ts';

const IDLE_MS = 400;
let pair: Pair;
let echo: UdpSocket;
let echoPort: number;
const sources = new Set<string>();

beforeAll(async () => {
  pair = await startPair({ udpIdleTimeoutMs: IDLE_MS });
  echo = createSocket('udp4');
  echo.on('message', (msg, from) => {
    sources.add(`${from.address}:${from.port}`);
    echo.send(Buffer.concat([Buffer.from('echo:'), msg]), from.port, from.address);
  });
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
  echoPort = echo.address().port;
});
afterAll(async () => {
  echo.close();
  await pair.stop();
});

describe('proxy UDP', () => {
  test('two sessions echo their own datagrams, then expire when idle', async () => {
    sources.clear();
    const closes: UdpCloseReason[] = [];
    const got: string[][] = [[], []];
    const sessions = await Promise.all(
      [0, 1].map(async (i) => {
        const ch = await pair.open({ protocol: 'udp', host: '127.0.0.1', port: echoPort });
        return udpSession(ch, {
          onDatagram: (d) => got[i]!.push(Buffer.from(d).toString()),
          onClose: (reason) => closes.push(reason),
        });
      }),
    );
    const big = 'x'.repeat(60_000);
    for (let n = 0; n < 5; n++) for (const [i, s] of sessions.entries()) expect(s.send(Buffer.from(`s${i}-${n}`))).toBe(true);
    expect(sessions[0]!.send(Buffer.from(big))).toBe(true);
    expect(sessions[1]!.send(new Uint8Array(0))).toBe(true);

    await waitFor(() => got[0]!.length === 6 && got[1]!.length === 6, 3_000, 'echoes');
    // Loopback UDP does not reorder; each session only sees its own replies.
    expect(got[0]).toEqual(['echo:s0-0', 'echo:s0-1', 'echo:s0-2', 'echo:s0-3', 'echo:s0-4', `echo:${big}`]);
    expect(got[1]).toEqual(['echo:s1-0', 'echo:s1-1', 'echo:s1-2', 'echo:s1-3', 'echo:s1-4', 'echo:']);
    expect(sources.size).toBe(2); // one target-side socket per session

    // No more traffic: the receiver's idle timeout closes both sessions.
    const started = Date.now();
    const ends = await Promise.all(sessions.map((s) => s.done));
    expect(ends.map((e) => e.reason)).toEqual(['remote', 'remote']);
    expect(ends.every((e) => e.error === undefined)).toBe(true);
    expect(closes).toEqual(['remote', 'remote']);
    expect(Date.now() - started).toBeLessThan(IDLE_MS + 1_500);
    expect(sessions[0]!.send(Buffer.from('after close'))).toBe(false);
    await waitFor(() => pair.sessions.length >= 2, 2_000, 'server session summaries');
  }, 10_000);

  test('traffic keeps a session alive past the idle timeout; the opener can close it', async () => {
    const ch = await pair.open({ protocol: 'udp', host: '127.0.0.1', port: echoPort });
    let replies = 0;
    const s = udpSession(ch, { onDatagram: () => replies++ });
    for (let i = 0; i < 8; i++) {
      s.send(Buffer.from(`ping ${i}`));
      await Bun.sleep(IDLE_MS / 4);
    }
    expect(s.closed).toBe(false);
    await waitFor(() => replies === 8, 2_000, 'replies');
    await s.close();
    expect((await s.done).reason).toBe('local');
  }, 10_000);

  test('an opener claiming another node name gets no UDP session', async () => {
    const err = await pair.open({ protocol: 'udp', host: '127.0.0.1', port: echoPort, fromNode: 'edge3' }).catch((e) => e);
    expect(err).toBeInstanceOf(ProxyRemoteError);
    expect(err.message).toBe('peer is not authorized as node edge3');
  });
});
