/**
 * privnet v1 between in-process libp2p nodes on 127.0.0.1, plus raw TCP
 * clients that misbehave. Every wait is bounded; every node/socket is closed.
 */
import { afterAll, describe, expect, test } from 'bun:test';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Libp2p } from 'libp2p';
import { deriveDirectionKeys, deriveProofs, deriveSwarmKey, NONCE_BYTES, PROOF_BYTES } from '../../src/tunnel/privnet/kdf.ts';
import { loadPrivnetCipher } from '../../src/tunnel/privnet/index.ts';
import { tryLoadOpenSslKeystream } from '../../src/tunnel/privnet/openssl.ts';
import { loopbackAddr, makeNode, sendOverOneStream, tcpPort } from './nodes.ts';
import type { Protection } from './nodes.ts';

const SECRET = new TextEncoder().encode('privnet test mesh secret');
const OTHER_SECRET = new TextEncoder().encode('some other mesh secret');
const HANDSHAKE_MS = 1000;
const providers: Protection[] = tryLoadOpenSslKeystream().ok ? ['openssl', 'noble'] : ['noble'];

const nodes: Libp2p[] = [];
const sockets: Socket[] = [];
async function node(protection: Protection, secret = SECRET, log?: (level: 'info' | 'warn', msg: string) => void): Promise<Libp2p> {
  const n = await makeNode({ protection, secret, privnet: { handshakeTimeoutMs: HANDSHAKE_MS, log } });
  nodes.push(n);
  return n;
}
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(nodes.map((n) => n.stop()));
});

async function expectTransfer(from: Libp2p, to: Libp2p, bytes: number): Promise<number> {
  const r = await sendOverOneStream(from, loopbackAddr(to), bytes);
  expect(r.receivedBytes).toBe(bytes);
  expect(r.receivedSha256).toBe(r.sentSha256);
  return r.mbPerSec;
}

interface RawClient {
  socket: Socket;
  /** Resolves with ms from connect until the server closed the socket (or rejects after `limitMs`). */
  closed: (limitMs: number) => Promise<number>;
  received: () => Uint8Array;
}

async function rawClient(port: number): Promise<RawClient> {
  const socket = connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  socket.setNoDelay(true);
  socket.on('error', () => {}); // resets are expected
  const chunks: Uint8Array[] = [];
  socket.on('data', (b: Buffer) => chunks.push(b));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const start = performance.now();
  const done = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - start)));
  return {
    socket,
    closed: (limitMs) =>
      Promise.race([done, Bun.sleep(limitMs).then(() => Promise.reject(new Error(`server kept the socket open for ${limitMs} ms`)))]),
    received: () => Buffer.concat(chunks),
  };
}

async function waitFor<T>(what: string, f: () => T | undefined, limitMs = 3000): Promise<T> {
  const end = performance.now() + limitMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

describe('privnet v1 over libp2p (tcp + noise + yamux)', () => {
  for (const p of providers) {
    test(`${p}: 64 MiB over one stream arrives intact`, async () => {
      const a = await node(p);
      const b = await node(p);
      const mbps = await expectTransfer(a, b, 64 * 1024 * 1024);
      console.log(`[privnet e2e] ${p}: ${mbps.toFixed(0)} MB/s over one stream (both ends in this process)`);
    });
  }

  test('openssl and noble ends interoperate in both directions', async () => {
    if (providers.length < 2) return;
    const o = await node('openssl');
    const n = await node('noble');
    await expectTransfer(o, n, 8 * 1024 * 1024 + 12_345);
    await expectTransfer(n, o, 8 * 1024 * 1024 + 54_321);
  });

  test('a node with a different secret cannot connect, and the listener keeps serving good peers', async () => {
    const listener = await node(providers[0]!);
    const outsider = await node(providers[0]!, OTHER_SECRET);
    const good = await node(providers[0]!);
    const start = performance.now();
    const err = await outsider.dial(loopbackAddr(listener), { signal: AbortSignal.timeout(10_000) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const ms = performance.now() - start;
    expect(err).toBeInstanceOf(Error);
    expect(ms).toBeLessThan(2000);
    console.log(`[privnet e2e] wrong-secret dial failed after ${ms.toFixed(0)} ms: ${(err as Error).name}: ${(err as Error).message}`);
    await waitFor('listener to drop the outsider', () =>
      listener.getConnections(outsider.peerId).length === 0 ? true : undefined,
    );
    await expectTransfer(good, listener, 1024 * 1024);
  });

  test('a silent TCP client is dropped after the handshake timeout without affecting others', async () => {
    const listener = await node(providers[0]!);
    const good = await node(providers[0]!);
    const silent = await rawClient(tcpPort(listener));
    // While the silent client holds a socket, a real peer connects and moves data.
    await expectTransfer(good, listener, 4 * 1024 * 1024);
    const ms = await silent.closed(HANDSHAKE_MS + 2000);
    expect(ms).toBeGreaterThan(HANDSHAKE_MS * 0.8);
    // The server sent its nonce and nothing else.
    expect(silent.received().byteLength).toBe(NONCE_BYTES);
    await expectTransfer(good, listener, 1024 * 1024);
  });

  test('a client that sends a nonce but no key confirmation is dropped after the timeout', async () => {
    const listener = await node(providers[0]!);
    const c = await rawClient(tcpPort(listener));
    c.socket.write(crypto.getRandomValues(new Uint8Array(NONCE_BYTES)));
    const ms = await c.closed(HANDSHAKE_MS + 2000);
    expect(ms).toBeGreaterThan(HANDSHAKE_MS * 0.8);
  });

  test('one source holds at most maxPendingPerSource handshakes; one more is closed at once, and a real peer still connects', async () => {
    const listener = await makeNode({ protection: providers[0]!, secret: SECRET, privnet: { handshakeTimeoutMs: 3000, maxPendingPerSource: 4 } });
    nodes.push(listener);
    const held = await Promise.all([0, 1, 2, 3].map(() => rawClient(tcpPort(listener))));
    await Bun.sleep(100);
    const extra = await rawClient(tcpPort(listener));
    expect(await extra.closed(1000)).toBeLessThan(1000);
    // the held ones are still waiting for their handshake
    for (const c of held) expect(c.socket.destroyed).toBe(false);
    // a real peer from the same address waits for a slot: free one
    held[0]!.socket.destroy();
    await Bun.sleep(1000);
    await expectTransfer(await node(providers[0]!), listener, 64 * 1024);
  });

  test('a TCP client sending garbage is dropped at once', async () => {
    const listener = await node(providers[0]!);
    const good = await node(providers[0]!);
    const c = await rawClient(tcpPort(listener));
    c.socket.write(crypto.getRandomValues(new Uint8Array(4096)));
    const ms = await c.closed(HANDSHAKE_MS + 2000);
    expect(ms).toBeLessThan(HANDSHAKE_MS * 0.8); // key confirmation fails, not the timeout
    await expectTransfer(good, listener, 1024 * 1024);
  });

  test('a client echoing the server nonce back is rejected', async () => {
    const listener = await node(providers[0]!);
    const c = await rawClient(tcpPort(listener));
    const nonce = await waitFor('server nonce', () => (c.received().byteLength >= NONCE_BYTES ? c.received().subarray(0, NONCE_BYTES) : undefined));
    c.socket.write(nonce);
    const ms = await c.closed(HANDSHAKE_MS + 2000);
    expect(ms).toBeLessThan(HANDSHAKE_MS * 0.8);
  });

  test('wire format: a hand-rolled client per the spec passes key confirmation split into single bytes', async () => {
    const listener = await node(providers[0]!);
    const cipher = loadPrivnetCipher({ provider: 'noble' }); // the other provider than the listener's, when available
    const swarm = deriveSwarmKey(SECRET);
    const run = async (tamper: boolean): Promise<{ ms: number | undefined; serverConfirm: Uint8Array }> => {
      const c = await rawClient(tcpPort(listener));
      const local = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
      c.socket.write(local);
      const remote = await waitFor('server nonce', () => (c.received().byteLength >= NONCE_BYTES ? c.received().slice(0, NONCE_BYTES) : undefined));
      const keys = deriveDirectionKeys(swarm, local, remote);
      const tx = cipher.create(keys.out, new Uint8Array(16));
      const rx = cipher.create(keys.in, new Uint8Array(16));
      const serverConfirm = await waitFor('server confirmation', () =>
        c.received().byteLength >= NONCE_BYTES + 16 ? c.received().slice(NONCE_BYTES, NONCE_BYTES + 16) : undefined,
      );
      rx.xor(serverConfirm, serverConfirm);
      const confirm = new Uint8Array(16);
      if (tamper) confirm[15] = 1;
      tx.xor(confirm, confirm);
      for (const byte of confirm) {
        c.socket.write(Uint8Array.of(byte));
        await Bun.sleep(5);
      }
      // Past the handshake timeout: a connection still open has passed confirmation
      // (noise then waits for our first message, up to libp2p's 10 s upgrade limit).
      const ms = await c.closed(HANDSHAKE_MS + 500).catch(() => undefined);
      c.socket.destroy();
      tx.destroy();
      rx.destroy();
      return { ms, serverConfirm };
    };
    const good = await run(false);
    expect([...good.serverConfirm]).toEqual(new Array(16).fill(0));
    expect(good.ms).toBeUndefined();
    const bad = await run(true);
    expect(bad.ms).toBeDefined();
    expect(bad.ms!).toBeLessThan(HANDSHAKE_MS);
  });
});

describe('privnet v2 over libp2p: a proof of the psk, then bytes as they are', () => {
  test('64 MiB over one stream arrive intact, both ways', async () => {
    const a = await node('v2');
    const b = await node('v2');
    const mbps = await expectTransfer(a, b, 64 * 1024 * 1024);
    await expectTransfer(b, a, 8 * 1024 * 1024 + 4321);
    console.log(`[privnet e2e] v2: ${mbps.toFixed(0)} MB/s over one stream (both ends in this process)`);
  });

  test('a node with a different secret cannot connect, fast, and the listener keeps serving good peers', async () => {
    const listener = await node('v2');
    const outsider = await node('v2', OTHER_SECRET);
    const good = await node('v2');
    const start = performance.now();
    const err = await outsider.dial(loopbackAddr(listener), { signal: AbortSignal.timeout(10_000) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(performance.now() - start).toBeLessThan(HANDSHAKE_MS * 0.8);
    await expectTransfer(good, listener, 1024 * 1024);
  });

  test('v1 and v2 nodes do not connect, and each side that can tell names the other version', async () => {
    for (const [listenAs, dialAs, theirs] of [['v2', providers[0]!, 'v1'], [providers[0]!, 'v2', 'v2']] as const) {
      const said: string[] = [];
      const listener = await node(listenAs, SECRET, (_level, msg) => said.push(msg));
      const dialer = await node(dialAs);
      const err = await dialer.dial(loopbackAddr(listener), { signal: AbortSignal.timeout(10_000) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      await waitFor(`the ${listenAs} listener to name the other version`, () => (said.some((m) => m.includes(`other end runs private network ${theirs}`)) ? true : undefined));
    }
  });

  test('wire format: a hand-rolled client passes with the proof split into single bytes; a replayed, reflected or wrong proof is refused', async () => {
    const listener = await node('v2');
    const swarm = deriveSwarmKey(SECRET);
    type Proof = (local: Uint8Array, remote: Uint8Array, serverProof: Uint8Array) => Uint8Array;
    const run = async (proof: Proof): Promise<{ ms: number | undefined; serverProofOk: boolean; sent: Uint8Array; nonce: Uint8Array }> => {
      const c = await rawClient(tcpPort(listener));
      const local = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
      c.socket.write(local);
      const remote = await waitFor('server nonce', () => (c.received().byteLength >= NONCE_BYTES ? c.received().slice(0, NONCE_BYTES) : undefined));
      const expected = deriveProofs(swarm, local, remote);
      const serverProof = await waitFor('server proof', () =>
        c.received().byteLength >= NONCE_BYTES + PROOF_BYTES ? c.received().slice(NONCE_BYTES, NONCE_BYTES + PROOF_BYTES) : undefined,
      );
      const sent = proof(local, remote, serverProof);
      for (const byte of sent) {
        c.socket.write(Uint8Array.of(byte));
        await Bun.sleep(2);
      }
      // Past the handshake timeout: a connection still open has passed the check
      // (noise then waits for our first message, up to libp2p's 10 s upgrade limit).
      const ms = await c.closed(HANDSHAKE_MS + 500).catch(() => undefined);
      c.socket.destroy();
      return { ms, serverProofOk: Buffer.from(serverProof).equals(Buffer.from(expected.in)), sent, nonce: local };
    };
    const good = await run((local, remote) => deriveProofs(swarm, local, remote).out);
    expect(good.serverProofOk).toBe(true);
    expect(good.ms).toBeUndefined();
    const refused = async (proof: Proof) => {
      const r = await run(proof);
      expect(r.ms).toBeDefined();
      expect(r.ms!).toBeLessThan(HANDSHAKE_MS);
    };
    // another connection's proof (same secret, other nonces)
    await refused(() => good.sent);
    // the server's own proof sent back
    await refused((_l, _r, serverProof) => serverProof);
    // the right construction with the nonces in the server's order
    await refused((local, remote) => deriveProofs(swarm, remote, local).out);
    // another secret
    await refused((local, remote) => deriveProofs(deriveSwarmKey(OTHER_SECRET), local, remote).out);
  });
});
