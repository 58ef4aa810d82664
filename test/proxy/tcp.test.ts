/** TCP through `/edgemesh/proxy/1.0.0` between two real libp2p nodes on loopback. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { Socket } from 'node:net';
import { ProxyRemoteError } from '../../src/tunnel/proxy/client.ts';
import { encodeRequest, replyDecoder } from '../../src/tunnel/proxy/header.ts';
import { resetSocket } from '../../src/tunnel/proxy/pipe.ts';
import {
  closedPort,
  collect,
  connectTo,
  drainStream,
  echoServer,
  frontDoor,
  listen,
  randomBytes,
  sha256,
  startPair,
  waitFor,
  writeAll,
} from './fixtures.ts';
import type { Pair } from './fixtures.ts';

let pair: Pair;
beforeAll(async () => {
  pair = await startPair({ headerTimeoutMs: 500 });
});
afterAll(async () => {
  await pair.stop();
});

function decodeReply(data: Uint8Array) {
  return replyDecoder().push(data)?.value;
}

describe('proxy TCP', () => {
  test('a few MiB echo intact through the tunnel, then both ends close cleanly', async () => {
    const echo = await echoServer();
    const door = await frontDoor(pair, { host: '127.0.0.1', port: echo.port });
    try {
      const payload = randomBytes(6 * 1024 * 1024 + 123);
      const client = await connectTo(door.port);
      const outcome = collect(client, 20_000);
      await writeAll(client, payload);
      client.end();
      const { data, ended, error } = await outcome;
      expect(error).toBeUndefined();
      expect(ended).toBe(true);
      expect(data.length).toBe(payload.byteLength);
      expect(sha256(data)).toBe(sha256(payload));
      await waitFor(() => pair.sessions.length > 0, 3_000, 'session summary');
      const s = pair.sessions.at(-1)!;
      expect(s.error).toBeUndefined();
      expect(s.bytesIn).toBe(payload.byteLength);
      expect(s.bytesOut).toBe(payload.byteLength);
    } finally {
      await door.close();
      await echo.close();
    }
  }, 30_000);

  test('half-close: the target sees EOF and its reply still reaches the client', async () => {
    let targetSawEof = false;
    // Replies only after reading EOF, like `nc -q` or an HTTP/1.0 upload.
    const target = await listen((s) => {
      let n = 0;
      s.on('data', (d) => (n += d.length));
      s.on('end', () => {
        targetSawEof = true;
        setTimeout(() => s.end(`received ${n} bytes`), 50);
      });
    });
    const door = await frontDoor(pair, { host: '127.0.0.1', port: target.port });
    try {
      const client = await connectTo(door.port);
      const outcome = collect(client);
      await writeAll(client, randomBytes(300_000));
      client.end();
      const { data, ended, error } = await outcome;
      expect(targetSawEof).toBe(true);
      expect(error).toBeUndefined();
      expect(ended).toBe(true);
      expect(data.toString()).toBe('received 300000 bytes');
    } finally {
      await door.close();
      await target.close();
    }
  }, 15_000);

  test('the target closing first (server-first EOF) reaches the client, which can still send', async () => {
    let got = '';
    const target = await listen((s) => {
      s.end('banner\n'); // close our write side at once, keep reading
      s.on('data', (d) => (got += d.toString()));
    });
    const door = await frontDoor(pair, { host: '127.0.0.1', port: target.port });
    try {
      const client = await connectTo(door.port);
      const outcome = collect(client);
      await new Promise((r) => client.once('end', r));
      client.end('late data after EOF');
      const { data, error } = await outcome;
      expect(error).toBeUndefined();
      expect(data.toString()).toBe('banner\n');
      await waitFor(() => got === 'late data after EOF', 3_000, 'late data at the target');
    } finally {
      await door.close();
      await target.close();
    }
  }, 15_000);

  test('a refused target fails the open quickly with the remote reason', async () => {
    const port = await closedPort();
    const started = Date.now();
    const err = await pair.open({ protocol: 'tcp', host: '127.0.0.1', port }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProxyRemoteError);
    expect((err as ProxyRemoteError).reason).toBe(`connect ECONNREFUSED 127.0.0.1:${port}`);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  test('an unauthorized opener is refused', async () => {
    const echo = await echoServer();
    try {
      const err = await pair.open({ protocol: 'tcp', host: '127.0.0.1', port: echo.port, fromNode: 'edge9' }).catch((e) => e);
      expect(err).toBeInstanceOf(ProxyRemoteError);
      expect(String(err.message)).toMatch(/not authorized as node edge9/);
    } finally {
      await echo.close();
    }
  });

  test('malformed headers close the stream with an error; the handler keeps serving', async () => {
    const logsBefore = pair.logs.length;
    // Junk: a well-framed body that is not JSON.
    const junk = await pair.rawStream();
    const junkDone = drainStream(junk);
    junk.send(Uint8Array.of(0, 5, ...new TextEncoder().encode('hello')));
    const r1 = await junkDone;
    expect(decodeReply(r1.data)).toEqual({ ok: false, error: 'bad request header: request header is not valid JSON' });

    // Oversized declared length followed by a flood: refused without reading it.
    const big = await pair.rawStream();
    const bigDone = drainStream(big);
    big.send(Uint8Array.of(0xff, 0xff));
    big.send(randomBytes(32 * 1024));
    const r2 = await bigDone;
    const reply2 = decodeReply(r2.data);
    expect(reply2?.ok).toBe(false);
    expect(reply2 && !reply2.ok && reply2.error).toMatch(/request header too large: declared 65535 bytes, limit 1024/);

    // Silence: the header timeout (500 ms in this pair) refuses it.
    const silent = await pair.rawStream();
    const r3 = await drainStream(silent);
    const reply3 = decodeReply(r3.data);
    expect(reply3 && !reply3.ok && reply3.error).toMatch(/no complete request header within 500 ms/);

    // One log line per refusal.
    const refusals = pair.logs.slice(logsBefore).filter((l) => l.includes('refused stream'));
    expect(refusals.length).toBe(3);

    // The next good stream works.
    const echo = await echoServer();
    const door = await frontDoor(pair, { host: '127.0.0.1', port: echo.port });
    try {
      const client = await connectTo(door.port);
      const outcome = collect(client);
      client.end('still serving');
      expect((await outcome).data.toString()).toBe('still serving');
    } finally {
      await door.close();
      await echo.close();
    }
  }, 15_000);

  test('payload and FIN sent right behind the header (before the reply) are delivered', async () => {
    const echo = await echoServer();
    try {
      const stream = await pair.rawStream();
      const done = drainStream(stream);
      stream.send(new Uint8Array([...encodeRequest({ protocol: 'tcp', host: '127.0.0.1', port: echo.port, fromNode: 'edge1' }), ...Buffer.from('early bytes')]));
      await stream.close();
      const { data, error } = await done;
      expect(error).toBeUndefined();
      const reply = replyDecoder().push(data);
      expect(reply?.value).toEqual({ ok: true });
      expect(Buffer.from(reply!.rest).toString()).toBe('early bytes');
    } finally {
      await echo.close();
    }
  });

  test('a target that greets on connect, with bytes behind the header: the reply still comes first, then the greeting; the target gets the bytes', async () => {
    let got = '';
    const target = await listen((s) => {
      s.write('220 hello\n'); // speaks first, like SMTP or SSH
      s.on('data', (d) => (got += d.toString()));
      s.on('end', () => s.end());
    });
    try {
      const stream = await pair.rawStream();
      const done = drainStream(stream);
      stream.send(new Uint8Array([...encodeRequest({ protocol: 'tcp', host: '127.0.0.1', port: target.port, fromNode: 'edge1' }), ...Buffer.from('EHLO edge1\n')]));
      await waitFor(() => got === 'EHLO edge1\n', 3_000, 'early bytes at the target');
      await stream.close();
      const { data } = await done;
      const reply = replyDecoder().push(data);
      expect(reply?.value).toEqual({ ok: true });
      expect(Buffer.from(reply!.rest).toString()).toBe('220 hello\n');
    } finally {
      await target.close();
    }
  });

  test('a client that writes and half-closes before the open is answered: bytes, then EOF, reach the target; its reply comes back', async () => {
    const echo = await echoServer();
    const door = await frontDoor(pair, { host: '127.0.0.1', port: echo.port }, { flowing: true });
    try {
      const client = await connectTo(door.port);
      const outcome = collect(client);
      client.end('ping, then EOF at once');
      const { data, ended, error } = await outcome;
      expect(error).toBeUndefined();
      expect(ended).toBe(true);
      expect(data.toString()).toBe('ping, then EOF at once');
    } finally {
      await door.close();
      await echo.close();
    }
  }, 15_000);

  test('a reset by the target reaches the client as a reset, not a hang', async () => {
    const target = await listen((s) => s.once('data', () => resetSocket(s)));
    const door = await frontDoor(pair, { host: '127.0.0.1', port: target.port });
    try {
      const client = await connectTo(door.port);
      const outcome = collect(client, 5_000);
      client.write('trigger');
      const { ended, error } = await outcome;
      expect(ended).toBe(false);
      expect(error?.code).toBe('ECONNRESET');
      await waitFor(() => pair.sessions.some((s) => s.error !== undefined), 3_000, 'server session to end with an error');
    } finally {
      await door.close();
      await target.close();
    }
  }, 10_000);

  test('a reset by the client reaches the target', async () => {
    let targetSocket: Socket | undefined;
    const target = await listen((s) => (targetSocket = s));
    const door = await frontDoor(pair, { host: '127.0.0.1', port: target.port });
    try {
      const client = await connectTo(door.port);
      client.on('error', () => {});
      client.write('hello');
      await waitFor(() => targetSocket !== undefined, 3_000, 'target connection');
      const outcome = collect(targetSocket!, 5_000);
      await Bun.sleep(50);
      resetSocket(client);
      const { ended } = await outcome;
      expect(ended).toBe(false); // closed by a reset, not an orderly EOF
    } finally {
      await door.close();
      await target.close();
    }
  }, 10_000);

  test('a slow reader gets every byte (backpressure, no buffer overflow)', async () => {
    const total = 24 * 1024 * 1024;
    const payload = randomBytes(total);
    const target = await listen((s) => {
      void writeAll(s, payload).then(() => s.end());
    });
    const door = await frontDoor(pair, { host: '127.0.0.1', port: target.port });
    try {
      const client = await connectTo(door.port);
      client.pause();
      await Bun.sleep(1_000); // everything upstream fills up and must stall, not fail
      const outcome = collect(client, 20_000);
      client.once('end', () => client.end());
      client.resume();
      const { data, error, ended } = await outcome;
      expect(error).toBeUndefined();
      expect(ended).toBe(true);
      expect(data.length).toBe(total);
      expect(sha256(data)).toBe(sha256(payload));
    } finally {
      await door.close();
      await target.close();
    }
  }, 30_000);
});

describe('proxy session cap', () => {
  test('streams beyond maxSessions are refused as busy; capacity returns when one ends', async () => {
    const capped = await startPair({ maxSessions: 1 });
    const echo = await echoServer();
    try {
      const first = await capped.open({ protocol: 'tcp', host: '127.0.0.1', port: echo.port });
      const err = await capped.open({ protocol: 'tcp', host: '127.0.0.1', port: echo.port }).catch((e) => e);
      expect(err).toBeInstanceOf(ProxyRemoteError);
      expect(err.message).toBe('busy: 1 proxy sessions in progress');
      first.stream.abort(new Error('done'));
      await waitFor(() => capped.server.active === 0, 3_000, 'first session to end');
      const again = await capped.open({ protocol: 'tcp', host: '127.0.0.1', port: echo.port });
      again.stream.abort(new Error('done'));
    } finally {
      await echo.close();
      await capped.stop();
    }
  });

  test('one peer past maxSessionsPerPeer is refused as busy, naming the node', async () => {
    const capped = await startPair({ maxSessionsPerPeer: 2 });
    const echo = await echoServer();
    try {
      const open = () => capped.open({ protocol: 'tcp', host: '127.0.0.1', port: echo.port });
      const held = [await open(), await open()];
      const err = await open().catch((e) => e);
      expect(err).toBeInstanceOf(ProxyRemoteError);
      expect(err.message).toBe('busy: 2 proxy sessions of node edge1 in progress');
      held[0]!.stream.abort(new Error('done'));
      await waitFor(() => capped.server.active === 1, 3_000, 'a session to end');
      (await open()).stream.abort(new Error('done'));
      held[1]!.stream.abort(new Error('done'));
    } finally {
      await echo.close();
      await capped.stop();
    }
  });
});
