// Flow control and accounting for relayed connections.
//
// The relay service joins the two halves of a relayed connection with a pipe
// (@libp2p/utils pipe → messageStreamToDuplex) that pushes every arriving
// message into an unbounded queue without pausing the stream, so yamux keeps
// granting window: when the destination is slower than the source, the
// server would buffer without limit. We wrap the halves' `send`: when a half
// cannot take more, the other half is paused until it drains, which stops
// window updates and so throttles the sender (`pauses` in /status counts it).
// The same wrapper counts bytes. (No 'message' listeners: one attached before
// the relay's own would swallow buffered data.)
//
// The service has no hook for this, so we wrap its STOP step: the stream it
// returns is the destination half; the source half is the newest unpaired hop
// stream from the source peer.
import type { Stream } from "@libp2p/interface";
import { peerIdFromMultihash } from "@libp2p/peer-id";
import * as Digest from "multiformats/hashes/digest";
import { noteBytes } from "./flow/gc-pacer.ts";
import { STREAM_HIGH_WATER, STREAM_LOW_WATER } from "./flow/water-marks.ts";

export interface RelayCounters {
  connections: number;
  active: number;
  bytes: number;
  /** times a half was paused because the other could not keep up */
  pauses: number;
  /** relayed connections refused: their source already had maxPerPeer open */
  refused: number;
}

const HOP = "/libp2p/circuit/relay/0.2.0/hop";
const paired = Symbol("edgemesh.paired");
/** bytes a paused half may still receive: the largest window a stream may grant (flow.maxStreamWindowKiB), plus slack */
export const readBufferFor = (maxStreamWindowBytes: number) => maxStreamWindowBytes + 256 * 1024;

type StopHop = (opts: { request: { peer?: { id: Uint8Array } } }, ...rest: unknown[]) => Promise<Stream | undefined>;

interface NodeLike {
  services: Record<string, unknown>;
  getConnections(peer?: unknown): Array<{ streams: Stream[] }>;
}

type Marked = Stream & { [paired]?: boolean };

/** writes to `writer` that it cannot take yet pause `reader` until `writer` has sent them (flow/water-marks.ts) */
function throttle(writer: Stream, reader: Stream, counters: RelayCounters, readBuffer: number): void {
  const send = writer.send.bind(writer);
  let waiting = false;
  reader.maxReadBufferLength = Math.max(reader.maxReadBufferLength, readBuffer);
  const check = () => {
    if (!waiting) return;
    if (writer.status === "open" && writer.writeBufferLength > STREAM_LOW_WATER) return;
    waiting = false;
    writer.removeEventListener("drain", later);
    writer.removeEventListener("idle", later);
    writer.removeEventListener("close", check);
    if (reader.status === "open" && reader.readStatus === "paused") reader.resume();
  };
  // after the writer's own listener has sent what the drain allows
  const later = () => queueMicrotask(check);
  writer.send = (data) => {
    counters.bytes += data.byteLength;
    noteBytes(data.byteLength);
    const ok = send(data);
    if ((!ok || writer.writeBufferLength > STREAM_HIGH_WATER) && !waiting && reader.status === "open") {
      waiting = true;
      counters.pauses++;
      if (reader.readStatus === "readable") reader.pause();
      writer.addEventListener("drain", later);
      writer.addEventListener("idle", later);
      writer.addEventListener("close", check);
    }
    return ok;
  };
}

function newestUnpairedHop(node: NodeLike, id: Uint8Array): Stream | undefined {
  const src = peerIdFromMultihash(Digest.decode(id));
  let best: Stream | undefined;
  for (const conn of node.getConnections(src))
    for (const s of conn.streams as Marked[])
      if (s.protocol === HOP && !s[paired] && s.status === "open" && (!best || s.timeline.open > best.timeline.open)) best = s;
  return best;
}

/**
 * Wraps the relay's STOP step: pairs and throttles the halves, counts, and
 * refuses a relayed connection whose source already has `maxPerPeer` open
 * (each holds two streams and their read buffers here), so one member cannot
 * make the server hold thousands.
 */
export function manageRelayedFlows(node: NodeLike, counters: RelayCounters, maxPerPeer = Infinity, onRefused?: (source: string) => void, maxStreamWindowBytes = 4 * 1024 * 1024): void {
  const readBuffer = readBufferFor(maxStreamWindowBytes);
  const relay = node.services.relay as { stopHop?: StopHop } | undefined;
  if (!relay?.stopHop) return;
  const original = relay.stopHop.bind(relay);
  const perSource = new Map<string, number>();
  relay.stopHop = async (opts, ...rest) => {
    const id = opts.request.peer?.id;
    let source = "";
    try {
      source = id ? peerIdFromMultihash(Digest.decode(id)).toString() : "";
    } catch {
      source = "";
    }
    if ((perSource.get(source) ?? 0) >= maxPerPeer) {
      // the relay answers the source CONNECTION_FAILED
      counters.refused++;
      onRefused?.(source);
      return undefined;
    }
    const dst = await original(opts, ...rest);
    if (!dst) return dst;
    counters.connections++;
    counters.active++;
    perSource.set(source, (perSource.get(source) ?? 0) + 1);
    dst.addEventListener(
      "close",
      () => {
        counters.active--;
        const n = (perSource.get(source) ?? 1) - 1;
        if (n > 0) perSource.set(source, n);
        else perSource.delete(source);
      },
      { once: true },
    );
    let src: Stream | undefined;
    try {
      src = id ? newestUnpairedHop(node, id) : undefined;
    } catch {
      src = undefined;
    }
    (dst as Marked)[paired] = true;
    if (src) {
      (src as Marked)[paired] = true;
      throttle(dst, src, counters, readBuffer);
      throttle(src, dst, counters, readBuffer);
    }
    return dst;
  };
}
