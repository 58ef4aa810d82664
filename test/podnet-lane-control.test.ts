// The lane's exchange (main thread): what it hands the reader thread, that a
// failed exchange is tried again on the same connection, and that offers
// which cross end with both sides on the same exchange.
import { expect, test } from "bun:test";
import { LaneControl } from "../src/agent/podnet/lane-control.ts";
import { decodeOffer, encodeGrant, encodeOffer, newOffer } from "../src/agent/podnet/lane-codec.ts";
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
  await Bun.sleep(10);
  // the link's next path checks: not again on that connection before the retry time
  lanes.ensure("edge3", link("c1"));
  expect(calls).toBe(1);
  await Bun.sleep(60);
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
  lanes.ensure("edge3", link("c1"));
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

/** a server's end of a grant request: the grant as soon as it is read */
function grantStream(grant: Uint8Array) {
  return {
    status: "open",
    addEventListener: (t: string, fn: (e: unknown) => void) => t === "message" && queueMicrotask(() => fn({ data: grant })),
    removeEventListener: () => {},
    close: async () => {},
    abort: () => {},
  };
}

type Node = "edge1" | "edge2";
const ADDR: Record<Node, string> = { edge1: "10.10.1.11", edge2: "10.10.2.12" };

/**
 * edge1 and edge2 offer each other a lane at once, each exchange on the
 * connection `conn[node]` (the one its tunnel opened the stream on; relayed
 * through a server when its path says so), while each side's new streams
 * take `preferred[node]`; returns the lanes each handed its reader thread,
 * the exchange streams still open, and how many exchanges each opened
 */
async function crossingOffers(conn: Record<Node, string>, preferred: Record<Node, string>, path: Record<Node, "direct" | "relayed"> = { edge1: "direct", edge2: "direct" }) {
  type Lane = { op: string; node?: string; txId?: number; txKey?: Uint8Array; rxId?: number; rxKey?: Uint8Array };
  const installs: Record<string, Lane[]> = { edge1: [], edge2: [] };
  const controls: Record<string, LaneControl> = {};
  const streams: Array<{ status: string; connectionId: string }> = [];
  const opened: Record<Node, number> = { edge1: 0, edge2: 0 };
  const other = (n: Node): Node => (n === "edge1" ? "edge2" : "edge1");
  // a connection's far end, as each side sees it: the peer, or the server relaying it
  const origin = (n: Node, seenFrom: Node) =>
    path[n] === "direct" ? { path: "direct", remoteIp: ADDR[seenFrom], connectionId: conn[n] } : { path: "relayed", relayPeer: "server", relayIp: "192.0.2.10", connectionId: conn[n] };
  for (const n of ["edge1", "edge2"] as const) {
    const tunnel = {
      openStream: async () => {
        opened[n]++;
        const [mine, theirs] = streamPair();
        streams.push(Object.assign(mine, { connectionId: conn[n] }));
        // the far agent serves it, seeing this agent at its address
        queueMicrotask(() => controls[other(n)]!.serve(theirs as never, n, origin(n, n) as never));
        return { stream: mine, ...origin(n, other(n)) };
      },
      openRelayStream: async () => grantStream(encodeGrant({ port: 20007, relayId: n === "edge1" ? 11 : 22, token: new Uint8Array(16) })),
      preferredConnection: () => preferred[n],
      servers: () => [],
    } as unknown as TunnelAccess;
    controls[n] = new LaneControl(tunnel, n, 20007, (m) => installs[n]!.push(m as Lane), log, 60_000);
  }
  controls.edge1!.ensure("edge2", { ...link(conn.edge1), ...origin("edge1", "edge2") } as NodeStream);
  controls.edge2!.ensure("edge1", { ...link(conn.edge2), ...origin("edge2", "edge1") } as NodeStream);
  await Bun.sleep(50);
  // the links' next path checks, on the connection each side prefers
  for (const n of ["edge1", "edge2"] as const) controls[n]!.ensure(other(n), { ...link(preferred[n]), path: "direct", remoteIp: ADDR[other(n)] });
  await Bun.sleep(50);
  const last = (n: string) => installs[n]!.filter((m) => m.op === "lane").at(-1)!;
  const r = {
    edge1: last("edge1"),
    edge2: last("edge2"),
    laneOf: { edge1: controls.edge1!.laneOf("edge2"), edge2: controls.edge2!.laneOf("edge1") },
    open: streams.filter((s) => s.status === "open").map((s) => s.connectionId),
    opened,
  };
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
  const r = await crossingOffers({ edge1: "c", edge2: "c" }, { edge1: "c", edge2: "c" });
  expectSameExchange(r);
  // one exchange's stream stays open as the lease; the other was closed
  expect(r.open).toEqual(["c"]);
});

test("offers crossing on two connections (one side still on the relayed path, the other already direct): both keep the direct one's exchange", async () => {
  const r = await crossingOffers({ edge1: "relayed", edge2: "direct" }, { edge1: "direct", edge2: "direct" }, { edge1: "relayed", edge2: "direct" });
  expectSameExchange(r);
  expect(r.open).toEqual(["direct"]);
});

test("two direct connections, each side preferring its own (both dialled at once): both keep one exchange and offer no more", async () => {
  const r = await crossingOffers({ edge1: "x", edge2: "y" }, { edge1: "x", edge2: "y" });
  expectSameExchange(r);
  expect(r.open.length).toBe(1);
  // a lane in place stays: the path checks on the other connection offer nothing new
  expect(r.opened).toEqual({ edge1: 1, edge2: 1 });
});
