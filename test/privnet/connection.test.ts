/**
 * PrivnetConnection over @libp2p/utils' in-memory MultiaddrConnection pair:
 * chunking, key confirmation, and that keystreams are released on close.
 */
import { describe, expect, test } from 'bun:test';
import { multiaddrConnectionPair } from '@libp2p/utils';
import type { MultiaddrConnection } from '@libp2p/interface';
import { PrivnetConnection } from '../../src/tunnel/privnet/connection.ts';
import { proofLayer, V1_CONFIRM_BYTES as CONFIRM_BYTES, xorLayer } from '../../src/tunnel/privnet/layers.ts';
import { PrivnetKeyMismatchError } from '../../src/tunnel/privnet/errors.ts';
import { loadPrivnetCipher } from '../../src/tunnel/privnet/index.ts';
import type { Keystream } from '../../src/tunnel/privnet/index.ts';

const cipher = loadPrivnetCipher();
const IV = new Uint8Array(16);

interface Tracked {
  ks: Keystream;
  destroyed: () => boolean;
}
function tracked(key: Uint8Array): Tracked {
  const inner = cipher.create(key, IV);
  let destroyed = false;
  return {
    ks: {
      xor: (s, d) => inner.xor(s, d),
      destroy: () => {
        destroyed = true;
        inner.destroy();
      },
    },
    destroyed: () => destroyed,
  };
}

function setup(opts: { wrongKey?: boolean; maxMessageSize?: number } = {}) {
  const [rawA, rawB] = multiaddrConnectionPair();
  const k1 = crypto.getRandomValues(new Uint8Array(32));
  const k2 = crypto.getRandomValues(new Uint8Array(32));
  const streams = [tracked(k1), tracked(k2), tracked(k2), tracked(opts.wrongKey === true ? k2 : k1)];
  const wrap = (maConn: MultiaddrConnection, tx: Tracked, rx: Tracked): PrivnetConnection =>
    new PrivnetConnection({ maConn, log: maConn.log, layer: xorLayer(tx.ks, rx.ks), maxMessageSize: opts.maxMessageSize ?? 64 * 1024, confirmTimeoutMs: 2000 });
  const a = wrap(rawA, streams[0]!, streams[1]!);
  const b = wrap(rawB, streams[2]!, streams[3]!);
  // Registered after the wrapper: an earlier 'message' listener on the raw
  // connection would consume bytes before the wrapper could see them.
  const wire: number[] = [];
  rawB.addEventListener('message', (evt) => wire.push(evt.data.byteLength));
  return { a, b, rawA, rawB, streams, wire };
}

function collect(conn: PrivnetConnection): { bytes: () => Uint8Array; events: () => number } {
  const parts: Uint8Array[] = [];
  conn.addEventListener('message', (evt) => {
    const d = evt.data;
    if (d instanceof Uint8Array) parts.push(Uint8Array.from(d));
    else for (const b of d) parts.push(Uint8Array.from(b));
  });
  return { bytes: () => Buffer.concat(parts), events: () => parts.length };
}

async function until(f: () => boolean, limitMs = 3000): Promise<void> {
  const end = performance.now() + limitMs;
  while (!f()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await Bun.sleep(5);
  }
}

describe('PrivnetConnection', () => {
  test('moves data both ways in odd-sized writes; the wire carries at most maxMessageSize per send', async () => {
    const { a, b, wire } = setup({ maxMessageSize: 16 * 1024 });
    const gotB = collect(b);
    const gotA = collect(a);
    const data = crypto.getRandomValues(new Uint8Array(60_000));
    const big = new Uint8Array(200_000);
    for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, Math.min(i + 65536, big.length)));
    // each send gets its own copy, as from noise
    let off = 0;
    for (const n of [1, 15, 16, 17, 1000, 4095, 20_000]) {
      a.send(data.slice(off, off + n));
      off += n;
    }
    a.send(data.slice(off));
    a.send(big.slice()); // one send far above maxMessageSize
    b.send(data.slice(0, 33));
    const expectB = Buffer.concat([data, big]);
    await until(() => gotB.bytes().byteLength >= expectB.byteLength && gotA.bytes().byteLength >= 33);
    expect(Buffer.from(gotB.bytes()).equals(expectB)).toBe(true);
    expect(Buffer.from(gotA.bytes()).equals(Buffer.from(data.subarray(0, 33)))).toBe(true);
    expect(wire[0]).toBe(CONFIRM_BYTES);
    expect(Math.max(...wire)).toBeLessThanOrEqual(16 * 1024);
    await a.close();
  });

  test('close and abort release both keystreams on both ends', async () => {
    const one = setup();
    await one.a.close();
    await until(() => one.streams.every((s) => s.destroyed()));
    expect(one.a.status).toBe('closed');

    const two = setup();
    two.a.abort(new Error('test abort'));
    await until(() => two.streams.every((s) => s.destroyed()));
    expect(two.b.status).not.toBe('open');
  });

  test('a wrong inbound key fails key confirmation and delivers nothing', async () => {
    const { b, streams } = setup({ wrongKey: true });
    const got = collect(b);
    const closed = new Promise<Error | undefined>((resolve) => b.addEventListener('close', (evt) => resolve(evt.error)));
    const err = await Promise.race([closed, Bun.sleep(3000).then(() => new Error('no close'))]);
    expect(err).toBeInstanceOf(PrivnetKeyMismatchError);
    expect(got.events()).toBe(0);
    expect(streams[2]!.destroyed() && streams[3]!.destroyed()).toBe(true);
  });
});

describe('PrivnetConnection with the v2 layer', () => {
  const proofs = () => [crypto.getRandomValues(new Uint8Array(32)), crypto.getRandomValues(new Uint8Array(32))] as const;

  test('after the proofs, bytes pass unchanged and uncopied', async () => {
    const [rawA, rawB] = multiaddrConnectionPair();
    const [pa, pb] = proofs();
    const a = new PrivnetConnection({ maConn: rawA, log: rawA.log, layer: proofLayer(pa, pb), maxMessageSize: 64 * 1024, confirmTimeoutMs: 2000 });
    const b = new PrivnetConnection({ maConn: rawB, log: rawB.log, layer: proofLayer(pb, pa), maxMessageSize: 64 * 1024, confirmTimeoutMs: 2000 });
    const wire: Uint8Array[] = [];
    rawB.addEventListener('message', (evt) => wire.push(Uint8Array.from(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())));
    const got = collect(b);
    const prefix = Uint8Array.of(0xff, 0xef);
    const body = crypto.getRandomValues(new Uint8Array(65_519));
    const list = new (await import('uint8arraylist')).Uint8ArrayList(prefix, body);
    a.send(list as never);
    await until(() => got.bytes().byteLength >= 2 + body.byteLength);
    expect(Buffer.from(got.bytes()).equals(Buffer.concat([prefix, body]))).toBe(true);
    expect(Buffer.from(wire[0]!).equals(Buffer.from(pa))).toBe(true);
    expect(Buffer.from(Buffer.concat(wire.slice(1))).equals(Buffer.concat([prefix, body]))).toBe(true);
    await a.close();
  });

  test("nothing the layer above sends leaves before the remote's proof is checked", async () => {
    const [rawA, rawB] = multiaddrConnectionPair();
    const [pa, pb] = proofs();
    const wire: number[] = [];
    rawB.addEventListener('message', (evt) => wire.push(evt.data.byteLength));
    const a = new PrivnetConnection({ maConn: rawA, log: rawA.log, layer: proofLayer(pa, pb), maxMessageSize: 64 * 1024, confirmTimeoutMs: 2000 });
    a.send(new Uint8Array(500).fill(9));
    await Bun.sleep(50);
    expect(wire).toEqual([32]); // our proof only
    const got: number[] = [];
    rawB.addEventListener('message', (evt) => got.push(evt.data.byteLength));
    rawB.send(pb); // the remote's proof, by hand
    await until(() => got.reduce((x, y) => x + y, 0) >= 500);
    expect(wire.slice(1).reduce((x, y) => x + y, 0)).toBe(500);
    await a.close();
  });

  test('what may wait for the remote\'s proof is bounded: past it the connection is aborted', async () => {
    const [rawA] = multiaddrConnectionPair();
    const [pa, pb] = proofs();
    const a = new PrivnetConnection({ maConn: rawA, log: rawA.log, layer: proofLayer(pa, pb), maxMessageSize: 64 * 1024, confirmTimeoutMs: 2000 });
    const closed = new Promise<Error | undefined>((resolve) => a.addEventListener('close', (evt) => resolve(evt.error)));
    let thrown: unknown;
    for (let i = 0; i < 6 && a.status === 'open'; i++) {
      try {
        a.send(new Uint8Array(64 * 1024));
      } catch (e) {
        thrown = e; // the send that crosses the bound fails, and the connection with it
      }
    }
    expect(String(thrown)).toContain('before the remote confirmed');
    const err = await Promise.race([closed, Bun.sleep(2000).then(() => new Error('no close'))]);
    expect(err?.message).toContain('before the remote confirmed');
  });

    test('a wrong proof delivers nothing, whatever follows it', async () => {
    const [rawA, rawB] = multiaddrConnectionPair();
    const [pa, pb] = proofs();
    const a = new PrivnetConnection({ maConn: rawA, log: rawA.log, layer: proofLayer(proofs()[0], pb), maxMessageSize: 64 * 1024, confirmTimeoutMs: 2000 });
    const b = new PrivnetConnection({ maConn: rawB, log: rawB.log, layer: proofLayer(pb, pa), maxMessageSize: 64 * 1024, confirmTimeoutMs: 2000 });
    const got = collect(b);
    const closed = new Promise<Error | undefined>((resolve) => b.addEventListener('close', (evt) => resolve(evt.error)));
    a.send(new Uint8Array(1000).fill(7));
    const err = await Promise.race([closed, Bun.sleep(3000).then(() => new Error('no close'))]);
    expect(err).toBeInstanceOf(PrivnetKeyMismatchError);
    expect(got.events()).toBe(0);
  });
});
