// The lane's exchange (main thread): what it hands the reader thread, and
// that a failed exchange is tried again on the same connection.
import { expect, test } from "bun:test";
import { LaneControl } from "../src/agent/podnet/lane-control.ts";
import { decodeOffer, encodeOffer, newOffer } from "../src/agent/podnet/lane-codec.ts";
import type { NodeStream, TunnelAccess } from "../src/model/tunnel.ts";
import { createLogger } from "../src/log.ts";
import { waitFor } from "./lab/wait.ts";

const log = createLogger("test", "error");

/** a peer's end of the exchange: answers our offer with `answer`, keeps the stream open as the lease */
function answeringStream(answer: Uint8Array) {
  const listeners = new Map<string, Array<(e: unknown) => void>>();
  const s = {
    status: "open",
    offers: [] as Uint8Array[],
    send(b: Uint8Array) {
      s.offers.push(b.slice());
      queueMicrotask(() => (listeners.get("message") ?? []).forEach((f) => f({ data: answer })));
      return true;
    },
    addEventListener: (t: string, fn: (e: unknown) => void) => listeners.set(t, [...(listeners.get(t) ?? []), fn]),
    removeEventListener: (t: string, fn: (e: unknown) => void) => listeners.set(t, (listeners.get(t) ?? []).filter((f) => f !== fn)),
    close: async () => {
      s.status = "closed";
      (listeners.get("close") ?? []).forEach((f) => f({}));
    },
    abort: () => void (s.status = "aborted"),
  };
  return s;
}

const link = (id: string): NodeStream => ({ stream: { status: "open" } as never, connectionId: id, path: "direct", remoteIp: "10.10.1.13" });

test("a failed exchange is tried again on the same connection; the lane is then handed to the reader thread, and goes when its lease closes", async () => {
  const theirs = newOffer(20007);
  const peer = answeringStream(encodeOffer(theirs));
  let calls = 0;
  const tunnel = {
    openStream: async () => {
      if (calls++ === 0) throw new Error("protocol selection failed");
      return { stream: peer, connectionId: "c1", path: "direct", remoteIp: "10.10.1.13" };
    },
    preferredConnection: () => "c1",
    servers: () => [],
  } as unknown as TunnelAccess;
  const installs: Array<{ op: string; node?: string; txId?: number; addr?: Uint8Array }> = [];
  const lanes = new LaneControl(tunnel, "edge1", 20007, (m) => installs.push(m), log, 50);
  lanes.ensure("edge3", link("c1"));
  await waitFor(async () => installs.some((m) => m.op === "lane"), { timeoutMs: 3000, description: "a lane after the retry" });
  expect(calls).toBe(2);
  const lane = installs.find((m) => m.op === "lane")!;
  expect(lane.node).toBe("edge3");
  expect(lane.txId).toBe(theirs.id);
  // to the peer's address as the connection sees it, at its port
  expect(Array.from(lane.addr!.subarray(2, 8))).toEqual([20007 >> 8, 20007 & 255, 10, 10, 1, 13]);
  const ours = decodeOffer(peer.offers[0]!);
  expect(typeof ours === "string" ? ours : ours.port).toBe(20007);
  expect(lanes.laneOf("edge3")).toBe("probing");
  lanes.onLane("edge3", true);
  expect(lanes.laneOf("edge3")).toBe("up");
  // the connection goes: the lane with it, at once
  await peer.close();
  expect(installs.at(-1)).toEqual({ op: "unlane", node: "edge3" });
  expect(lanes.laneOf("edge3")).toBe("-");
  lanes.stop();
});

test("a stopped control tries nothing again", async () => {
  let calls = 0;
  const tunnel = { openStream: async () => (calls++, Promise.reject(new Error("no"))), preferredConnection: () => "c1", servers: () => [] } as unknown as TunnelAccess;
  const lanes = new LaneControl(tunnel, "edge1", 20007, () => {}, log, 30);
  lanes.ensure("edge3", link("c1"));
  await Bun.sleep(5);
  lanes.stop();
  await Bun.sleep(100);
  expect(calls).toBe(1);
});

/** two ends of a stream between two agents: what one sends, the other's listeners get */
function streamPair() {
  type L = Map<string, Array<(e: unknown) => void>>;
  const end = (mine: L, theirs: L) => {
    const e = {
      status: "open",
      send(b: Uint8Array) {
        const copy = b.slice();
        queueMicrotask(() => (theirs.get("message") ?? []).forEach((f) => f({ data: copy })));
        return true;
      },
      addEventListener: (t: string, fn: (e: unknown) => void) => mine.set(t, [...(mine.get(t) ?? []), fn]),
      removeEventListener: (t: string, fn: (e: unknown) => void) => mine.set(t, (mine.get(t) ?? []).filter((f) => f !== fn)),
      close: async () => {
        if (a.status !== "open") return;
        a.status = b.status = "closed";
        for (const m of [la, lb]) (m.get("close") ?? []).forEach((f) => f({}));
      },
      abort: () => void e.close(),
    };
    return e;
  };
  const la: L = new Map();
  const lb: L = new Map();
  const a = end(la, lb);
  const b = end(lb, la);
  return [a, b] as const;
}

/**
 * edge1 and edge2 offer each other a lane at once, each exchange on the
 * connection `conn[node]` (the one its tunnel opened the stream on), while new
 * streams take `preferred`; returns the lanes each handed its reader thread
 * and the exchange streams with their connections
 */
async function crossingOffers(conn: Record<"edge1" | "edge2", string>, preferred: string) {
  type Lane = { op: string; node?: string; txId?: number; txKey?: Uint8Array; rxId?: number; rxKey?: Uint8Array };
  const installs: Record<string, Lane[]> = { edge1: [], edge2: [] };
  const controls: Record<string, LaneControl> = {};
  const streams: Array<{ status: string; connectionId: string }> = [];
  const other = (n: "edge1" | "edge2") => (n === "edge1" ? "edge2" : "edge1");
  for (const n of ["edge1", "edge2"] as const) {
    const tunnel = {
      openStream: async () => {
        const [mine, theirs] = streamPair();
        streams.push(Object.assign(mine, { connectionId: conn[n] }));
        // the far agent serves it, seeing this agent at its address
        queueMicrotask(() => controls[other(n)]!.serve(theirs as never, n, { path: "direct", remoteIp: n === "edge1" ? "10.10.1.11" : "10.10.2.12", connectionId: conn[n] }));
        return { stream: mine, connectionId: conn[n], path: "direct", remoteIp: n === "edge1" ? "10.10.2.12" : "10.10.1.11" };
      },
      preferredConnection: () => preferred,
      servers: () => [],
    } as unknown as TunnelAccess;
    controls[n] = new LaneControl(tunnel, n, 20007, (m) => installs[n]!.push(m as Lane), log, 60_000);
  }
  controls.edge1!.ensure("edge2", { ...link(conn.edge1), remoteIp: "10.10.2.12" });
  controls.edge2!.ensure("edge1", { ...link(conn.edge2), remoteIp: "10.10.1.11" });
  await Bun.sleep(50);
  const last = (n: string) => installs[n]!.filter((m) => m.op === "lane").at(-1)!;
  const r = { edge1: last("edge1"), edge2: last("edge2"), laneOf: { edge1: controls.edge1!.laneOf("edge2"), edge2: controls.edge2!.laneOf("edge1") }, open: streams.filter((s) => s.status === "open").map((s) => s.connectionId) };
  for (const c of Object.values(controls)) c.stop();
  return r;
}

/** each side sends under the key and id the other receives with, and both lanes are being probed */
function expectSameExchange(r: Awaited<ReturnType<typeof crossingOffers>>): void {
  expect(r.edge1.txId).toBe(r.edge2.rxId!);
  expect(r.edge1.txKey).toEqual(r.edge2.rxKey!);
  expect(r.edge2.txId).toBe(r.edge1.rxId!);
  expect(r.edge2.txKey).toEqual(r.edge1.rxKey!);
  expect(r.laneOf).toEqual({ edge1: "probing", edge2: "probing" });
}

test("two agents that offer each other a lane at once keep the same exchange: each sends under the key the other receives with", async () => {
  const r = await crossingOffers({ edge1: "c", edge2: "c" }, "c");
  expectSameExchange(r);
  // one exchange's stream stays open as the lease; the other was closed
  expect(r.open).toEqual(["c"]);
});

test("offers crossing on two connections (one side still on the relayed path, the other already direct): both keep the direct one's exchange", async () => {
  const r = await crossingOffers({ edge1: "relayed", edge2: "direct" }, "direct");
  expectSameExchange(r);
  expect(r.open).toEqual(["direct"]);
});
