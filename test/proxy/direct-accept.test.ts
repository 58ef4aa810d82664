// Inbound proxy streams are recognised by their first bytes and handed to the
// proxy server without libp2p's negotiation; the acknowledgements travel with
// the reply. Openers that negotiate the stock way, other protocols on the same
// connection, and streams that start with anything else keep libp2p's path.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Stream } from "@libp2p/interface";
import { PROXY_PROTOCOL } from "../../src/tunnel/proxy/server.ts";
import { encodeRequest } from "../../src/tunnel/proxy/header.ts";
import { openProxyStream } from "../../src/tunnel/proxy/client.ts";
import { MULTISTREAM_ID, selectAndSend } from "../../src/tunnel/proxy/optimistic-select.ts";
import { collect, connectTo, echoServer, frontDoor, startPair, type Pair } from "./fixtures.ts";

const ECHO_PROTOCOL = "/test/echo/1.0.0";
let pair: Pair;
let echo: Awaited<ReturnType<typeof echoServer>>;

beforeAll(async () => {
  pair = await startPair();
  echo = await echoServer();
  // another protocol on the same node, served by libp2p's own handler
  await pair.b.handle(ECHO_PROTOCOL, (stream: Stream) => {
    stream.addEventListener("message", (e) => stream.send(e.data instanceof Uint8Array ? e.data : e.data.subarray()));
    stream.addEventListener("remoteCloseWrite", () => void stream.close());
  });
});
afterAll(async () => {
  await echo.close();
  await pair.stop();
});

type Muxer = { createStream(): Promise<Stream> };
async function bareStream(): Promise<Stream> {
  const conn = await pair.a.dial(pair.bAddr);
  return (conn as unknown as { muxer: Muxer }).muxer.createStream();
}

/** every byte that comes back on the stream until it ends */
function firstReply(stream: Stream, ms = 3000): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no reply")), ms);
    stream.addEventListener("message", (e) => {
      clearTimeout(t);
      resolve(e.data instanceof Uint8Array ? e.data : e.data.subarray());
    }, { once: true });
  });
}

test("an optimistic opener is served directly; the acknowledgements arrive in the same message as the reply", async () => {
  const before = { ...pair.accepted };
  const stream = await bareStream();
  const request = encodeRequest({ protocol: "tcp", host: "127.0.0.1", port: echo.port, fromNode: "edge1" });
  const reply = firstReply(stream);
  stream.send(selectAndSend(PROXY_PROTOCOL, request));
  const got = Buffer.from(await reply);
  const acks = Buffer.from(selectAndSend(PROXY_PROTOCOL, new Uint8Array(0)));
  expect(got.subarray(0, acks.byteLength).equals(acks)).toBe(true);
  expect(got.byteLength).toBeGreaterThan(acks.byteLength); // the reply is in the same message
  expect(pair.accepted.direct).toBe(before.direct + 1);
  expect(pair.accepted.stock).toBe(before.stock);
  stream.abort(new Error("done"));
});

test("a request split across messages (a few bytes with the protocol lines, the rest later) is still read whole and served", async () => {
  const stream = await bareStream();
  const request = encodeRequest({ protocol: "tcp", host: "127.0.0.1", port: echo.port, fromNode: "edge1" });
  const reply = firstReply(stream);
  stream.send(selectAndSend(PROXY_PROTOCOL, request.subarray(0, 3)));
  await Bun.sleep(50);
  stream.send(request.subarray(3));
  await Bun.sleep(20);
  stream.send(Buffer.from("ping"));
  const got = Buffer.from(await reply);
  expect(got.includes(Buffer.from('"ok":true'))).toBe(true);
  const echoed = await firstReply(stream).catch(() => Buffer.alloc(0));
  // "ping" either came with the reply or in the next message
  expect(Buffer.concat([got, Buffer.from(echoed)]).toString().endsWith("ping")).toBe(true);
  stream.abort(new Error("done"));
});

test("a proxied connection through the direct path carries data both ways and half-closes", async () => {
  const door = await frontDoor(pair, { host: "127.0.0.1", port: echo.port });
  try {
    const client = await connectTo(door.port);
    const outcome = collect(client);
    client.end("through the direct accept");
    const { data, ended, error } = await outcome;
    expect(error).toBeUndefined();
    expect(ended).toBe(true);
    expect(data.toString()).toBe("through the direct accept");
  } finally {
    await door.close();
  }
});

test("an opener that negotiates the stock way (waits for the acks) gets them at once and is served", async () => {
  const stream = await pair.rawStream(); // libp2p's newStream: negotiated before we write
  const ch = await openProxyStream(stream, { protocol: "tcp", host: "127.0.0.1", port: echo.port, fromNode: "edge1" }, { timeoutMs: 3000 });
  expect(ch.stream.protocol).toBe(PROXY_PROTOCOL);
  ch.stream.abort(new Error("done"));
});

test("another protocol on the same connection keeps libp2p's negotiation and works", async () => {
  const before = { ...pair.accepted };
  const conn = await pair.a.dial(pair.bAddr);
  const stream = await conn.newStream(ECHO_PROTOCOL);
  const back = firstReply(stream);
  stream.send(new TextEncoder().encode("hello"));
  expect(Buffer.from(await back).toString()).toBe("hello");
  expect(pair.accepted.stock).toBe(before.stock + 1);
  stream.abort(new Error("done"));
});

test("a stream that starts with anything else goes to libp2p, which refuses it; the connection stays usable", async () => {
  const stream = await bareStream();
  const lp = (s: string) => {
    const b = new TextEncoder().encode(`${s}\n`);
    return Uint8Array.from([b.byteLength, ...b]);
  };
  let seen = "";
  stream.addEventListener("message", (e) => (seen += Buffer.from(e.data instanceof Uint8Array ? e.data : e.data.subarray()).toString()));
  stream.send(Uint8Array.from([...lp(MULTISTREAM_ID), ...lp("/no/such/protocol")]));
  const deadline = Date.now() + 3000;
  while (!seen.includes("na\n") && Date.now() < deadline) await Bun.sleep(5);
  expect(seen).toContain(MULTISTREAM_ID); // libp2p's handler answered
  expect(seen).toContain("na\n"); // and refused the protocol
  stream.abort(new Error("done"));
  const ch = await pair.open({ protocol: "tcp", host: "127.0.0.1", port: echo.port });
  expect(ch.stream.protocol).toBe(PROXY_PROTOCOL);
  ch.stream.abort(new Error("done"));
});
