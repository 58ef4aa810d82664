// BunTcpSocket against node:net peers on loopback: the node:net behaviour the
// pipes rely on (held bytes until resume, FIN after data, half-close both
// ways, backpressure, resets, refused dials).
import { afterEach, expect, test } from "bun:test";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { ByteSocket } from "../src/net/byte-socket.ts";
import { BunTcpSocket, connectTcp, listenTcp, type TcpListener } from "../src/net/bun-socket.ts";

const servers: Server[] = [];
const listeners: TcpListener[] = [];
const sockets: Array<{ destroy(): void }> = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
  for (const l of listeners.splice(0)) l.close();
});

async function peer(onConn: (s: Socket) => void): Promise<number> {
  const srv = createServer({ allowHalfOpen: true }, onConn);
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return (srv.address() as AddressInfo).port;
}

async function dial(port: number): Promise<BunTcpSocket> {
  const s = await connectTcp("127.0.0.1", port).connected;
  sockets.push(s);
  return s;
}

function collect(s: ByteSocket): Promise<string> {
  const parts: Buffer[] = [];
  s.on("data", (d: Buffer) => void parts.push(d));
  return new Promise((r) => s.once("end", () => r(Buffer.concat(parts).toString())));
}

const closed = (s: ByteSocket) => new Promise<boolean>((r) => s.once("close", r));
const tick = (ms = 30) => Bun.sleep(ms);

test("bytes and the FIN that came before resume() are held and delivered in order", async () => {
  const port = await peer((s) => s.end("hello, world"));
  const s = await dial(port);
  await tick();
  expect(s.readableEnded).toBe(false);
  const got = collect(s);
  s.resume();
  expect(await got).toBe("hello, world");
  expect(s.readableEnded).toBe(true);
});

test("pause() stops delivery until resume(), losing nothing", async () => {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const port = await peer((s) => {
    for (let i = 0; i < 32; i++) s.write(chunk);
    s.end();
  });
  const s = await dial(port);
  let n = 0;
  let whilePaused = 0;
  let paused = false;
  s.on("data", (d: Buffer) => {
    if (paused) whilePaused += d.length;
    n += d.length;
    if (n > 256 * 1024 && n < 1024 * 1024 && !paused) {
      paused = true;
      s.pause();
      setTimeout(() => {
        paused = false;
        s.resume();
      }, 50);
    }
  });
  const ended = new Promise<void>((r) => s.once("end", () => r()));
  s.resume();
  await ended;
  expect(n).toBe(32 * chunk.length);
  expect(whilePaused).toBe(0);
});

test("half-close both ways: our FIN after the peer's, the peer still reads our late bytes", async () => {
  let peerGot!: Promise<string>;
  const port = await peer((p) => {
    peerGot = collect(p);
    p.end("request done");
  });
  const s = await dial(port);
  const got = collect(s);
  const close = closed(s);
  s.resume();
  expect(await got).toBe("request done");
  expect(s.write(Buffer.from("late reply"))).toBe(true);
  s.end();
  expect(s.writable).toBe(false);
  expect(await peerGot).toBe("late reply");
  expect(await close).toBe(false);
});

test("our FIN first: the peer's answer and its FIN still arrive, then an orderly close", async () => {
  const port = await peer((p) => {
    const got = collect(p);
    void got.then((text) => setTimeout(() => p.end(`echo:${text}`), 20));
  });
  const s = await dial(port);
  const got = collect(s);
  const close = closed(s);
  s.resume();
  s.write(Buffer.from("ping"));
  s.end();
  expect(await got).toBe("echo:ping");
  expect(await close).toBe(false);
});

test("a write larger than the kernel takes is queued, reported by false and 'drain', and FIN waits for it", async () => {
  const big = Buffer.alloc(16 * 1024 * 1024, 1);
  let peerSock!: Socket;
  let count = 0;
  let peerEnded!: Promise<void>;
  const port = await peer((p) => {
    peerSock = p;
    p.pause(); // our side fills up first
    p.on("data", (d) => void (count += d.length));
    peerEnded = new Promise((r) => p.on("end", () => r()));
  });
  const s = await dial(port);
  expect(s.write(big)).toBe(false);
  const drained = new Promise<void>((r) => s.once("drain", () => r()));
  s.end();
  await tick(50);
  peerSock.resume();
  await drained;
  await peerEnded;
  expect(count).toBe(big.length);
});

test("resetAndDestroy sends an RST; a peer's RST is an 'error' and close(hadError)", async () => {
  let peerError!: Promise<string>;
  const port = await peer((p) => {
    peerError = new Promise((r) => p.on("error", (e: NodeJS.ErrnoException) => r(e.code ?? "")));
  });
  const s = await dial(port);
  await tick();
  s.resetAndDestroy();
  expect(s.destroyed).toBe(true);
  expect(await peerError).toBe("ECONNRESET");

  const port2 = await peer((p) => setTimeout(() => p.resetAndDestroy(), 10));
  const s2 = await dial(port2);
  const err = new Promise<string>((r) => s2.on("error", (e: NodeJS.ErrnoException) => r(e.code ?? "")));
  const close = closed(s2);
  s2.resume();
  expect(await err).toBe("ECONNRESET");
  expect(await close).toBe(true);
});

test("bytes written and a FIN sent before the connect completes go out once it does", async () => {
  let got!: Promise<string>;
  const port = await peer((p) => {
    got = collect(p);
  });
  const { socket, connected } = connectTcp("127.0.0.1", port);
  sockets.push(socket);
  expect(socket.write(Buffer.from("sent early"))).toBe(false); // queued
  socket.end();
  await connected;
  await tick(20);
  expect(await got).toBe("sent early");
});

test("a refused dial rejects with the errno code", async () => {
  const port = await peer(() => {});
  servers.splice(0)[0]!.close();
  await tick(10);
  const e = (await connectTcp("127.0.0.1", port).connected.catch((x: unknown) => x)) as NodeJS.ErrnoException;
  expect(e.code).toBe("ECONNREFUSED");
});

test("listenTcp: accepted sockets know the client's address; close() stops accepting, open ones go on", async () => {
  let accepted!: (s: BunTcpSocket) => void;
  const got = new Promise<BunTcpSocket>((r) => (accepted = r));
  const l = listenTcp("127.0.0.1", 0, (s) => accepted(s));
  listeners.push(l);
  const c = connect(l.port, "127.0.0.1");
  sockets.push(c);
  const s = await got;
  expect(s.remoteAddress).toBe("127.0.0.1");
  l.close();
  const refused = await new Promise<string>((r) => connect(l.port, "127.0.0.1").on("error", (e: NodeJS.ErrnoException) => r(e.code ?? "")).on("connect", () => r("connected")));
  expect(refused).toBe("ECONNREFUSED");
  const echoed = collect(c);
  s.on("data", (d: Buffer) => s.write(d));
  s.on("end", () => s.end());
  s.resume();
  c.end("still served");
  expect(await echoed).toBe("still served");
});
