// Opening a proxy stream with the protocol selected in the same write as the
// request: the acknowledgements are checked in front of the reply, whatever
// the chunking, and a refusal is an error, not a reply.
import { expect, test } from "bun:test";
import { AfterSelectDecoder, MULTISTREAM_ID, ProtocolRefusedError, selectAndSend } from "../../src/tunnel/proxy/optimistic-select.ts";
import { encodeReply, replyDecoder } from "../../src/tunnel/proxy/header.ts";
import { PROXY_PROTOCOL } from "../../src/tunnel/proxy/server.ts";
import { startPair, echoServer } from "./fixtures.ts";

const lp = (s: string) => {
  const b = new TextEncoder().encode(`${s}\n`);
  return Uint8Array.from([b.byteLength, ...b]);
};
const cat = (...xs: Uint8Array[]) => Uint8Array.from(xs.flatMap((x) => [...x]));

test("what goes out: multistream header, protocol line, then the request untouched", () => {
  const out = selectAndSend(PROXY_PROTOCOL, Uint8Array.from([1, 2, 3]));
  expect([...out]).toEqual([...lp(MULTISTREAM_ID), ...lp(PROXY_PROTOCOL), 1, 2, 3]);
});

test("the acknowledgements, the reply and payload after it, fed one byte at a time", () => {
  const wire = cat(lp(MULTISTREAM_ID), lp(PROXY_PROTOCOL), encodeReply({ ok: true }), Uint8Array.from([7, 8]));
  const d = new AfterSelectDecoder(PROXY_PROTOCOL, replyDecoder());
  let got;
  for (let i = 0; i < wire.byteLength && !got; i++) got = d.push(wire.subarray(i, i + 1));
  expect(got?.value).toEqual({ ok: true });
  // everything in one chunk: the payload behind the reply is handed back
  const once = new AfterSelectDecoder(PROXY_PROTOCOL, replyDecoder()).push(wire);
  expect(once?.value).toEqual({ ok: true });
  expect([...once!.rest]).toEqual([7, 8]);
});

test('"na" (protocol not served) is a refusal', () => {
  const d = new AfterSelectDecoder(PROXY_PROTOCOL, replyDecoder());
  expect(() => d.push(cat(lp(MULTISTREAM_ID), lp("na")))).toThrow(ProtocolRefusedError);
});

test("against a stock libp2p handler: the stream works, and a node that does not serve the protocol refuses it", async () => {
  const pair = await startPair({}, { directAccept: false });
  const echo = await echoServer();
  try {
    const ch = await pair.open({ protocol: "tcp", host: "127.0.0.1", port: echo.port });
    expect(ch.stream.protocol).toBe(PROXY_PROTOCOL);
    ch.stream.close();
    await pair.b.unhandle(PROXY_PROTOCOL);
    const err = await pair.open({ protocol: "tcp", host: "127.0.0.1", port: echo.port }).catch((e) => e);
    expect(err).toBeInstanceOf(ProtocolRefusedError);
  } finally {
    await echo.close();
    await pair.stop();
  }
});
