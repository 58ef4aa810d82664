// The per-stream peer-store write is skipped after the first stream of a
// protocol to a peer; if a libp2p upgrade moves the internals, this fails
// instead of the agent silently getting slower.
import { expect, test } from "bun:test";
import { createLibp2p } from "libp2p";
import { tcp } from "@libp2p/tcp";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { skipRepeatedProtocolMerges } from "../src/tunnel/stream-fastpath.ts";
import type { TunnelNode } from "../src/tunnel/node.ts";

test("repeated protocol merges are skipped on both ends; streams still work", async () => {
  const mk = () => createLibp2p({ addresses: { listen: ["/ip4/127.0.0.1/tcp/0"] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
  const [a, b] = [await mk(), await mk()];
  try {
    await b.handle("/echo/1", async (stream) => {
      for await (const chunk of stream) stream.send(chunk);
      await stream.close();
    });
    const calls = { a: 0, b: 0 };
    for (const [name, n] of [["a", a], ["b", b]] as const) {
      const ps = (n as unknown as { components: { peerStore: { merge: (...x: unknown[]) => Promise<unknown> } } }).components.peerStore;
      const orig = ps.merge.bind(ps);
      ps.merge = (...x: unknown[]) => {
        const data = x[1] as Record<string, unknown>;
        if (Object.keys(data).length === 1 && Array.isArray(data.protocols)) calls[name]++;
        return orig(...x);
      };
      expect(skipRepeatedProtocolMerges(n as unknown as TunnelNode)).toBe(true);
    }
    const conn = await a.dial(b.getMultiaddrs()[0]!);
    for (let i = 0; i < 5; i++) {
      const s = await conn.newStream("/echo/1");
      s.send(new TextEncoder().encode(`hi ${i}`));
      let got = "";
      for await (const c of s) {
        got += new TextDecoder().decode(c.subarray());
        break;
      }
      expect(got).toBe(`hi ${i}`);
      await s.close();
    }
    expect(calls).toEqual({ a: 1, b: 1 });
  } finally {
    await a.stop();
    await b.stop();
  }
}, 20_000);
