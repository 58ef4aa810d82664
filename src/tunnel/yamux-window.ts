// Our changes to the stock @chainsafe/libp2p-yamux stream (patched on the
// stream class, exported as @chainsafe/libp2p-yamux/stream, once):
//
// - Window updates are batched. The stock stream answers every data frame it
//   consumes with a window update: for small messages (an interactive
//   session, a request/response) that doubles the frames, encryptions and
//   socket writes in the reverse direction (measured: per 64-byte echo, one
//   94-byte data frame and one 30-byte window update on the wire).
//   hashicorp/yamux, the protocol's origin, waits until half of the window has
//   been consumed; so do we. A new stream's SYN and ACK wait for its first
//   data frame instead of taking a frame of their own (yamux allows the flags
//   on any frame).
// - A paused reader grants no window, whatever the yamux state says.
// - A window grows only within the process's budget (flow/budget.ts), and
//   gives back what it took when the stream ends: the stock stream doubles up
//   to 16 MiB per stream, and a paused stream keeps accepting what it granted.
// - A stream sends data only while its connection takes more. The stock
//   muxer's 'drain' (the connection took more) reaches every stream at once,
//   and each sends at least one frame before it sees the connection full
//   again, so with N busy streams the connection's queue grew by N frames per
//   frame written (measured: pings behind it took seconds, then failed, and
//   the connection was dropped with all its flows). The streams also take
//   turns: the first to be told of a drain rotates (flowControlledYamux).
// - Data frames are at most MAX_FRAME_BYTES. The stock stream sends its whole
//   send window as one frame (up to 16 MiB), which every layer below copies
//   (noise's ciphertext, the private network's keystream) before the socket
//   takes any of it.
import { StreamState, YamuxStream } from "@chainsafe/libp2p-yamux/stream";
import type { Uint8ArrayList } from "uint8arraylist";
import { windowBudget, type WindowBudget } from "./flow/budget.ts";

const PATCHED = Symbol.for("edgemesh.yamux.flow");
/** one noise message holds 65,519 bytes of plaintext: a 12-byte yamux header and this much data */
export const MAX_FRAME_BYTES = 65_519 - 12;
const DATA = 0;

interface PatchedStream {
  state: StreamState;
  readStatus: string;
  streamId: number;
  recvWindow: number;
  recvWindowCapacity: number;
  sendWindowCapacity: number;
  maxStreamWindowSize: number;
  epochStart: number;
  getRTT(): number;
  getSendFlags(): number;
  sendFrame(header: { type: number; flag: number; streamID: number; length: number }, data?: Uint8ArrayList): boolean;
  addEventListener(type: string, fn: () => void, opts?: { once: boolean }): void;
  /** bytes this stream took from the budget */
  [BORROWED]?: number;
  [CONN]?: ConnLike;
}
const BORROWED = Symbol("edgemesh.yamux.borrowed");
/** the muxer's underlying connection (noise's message stream), set on each new stream */
const CONN = Symbol("edgemesh.yamux.conn");
interface ConnLike {
  writableNeedsDrain: boolean;
  addEventListener(type: "drain", fn: () => void): void;
}

/** installs the patches; false when the stream class no longer looks as expected (stock behaviour stays) */
export function patchYamuxStreams(budget: WindowBudget = windowBudget): boolean {
  const proto = YamuxStream.prototype as unknown as Record<PropertyKey, unknown>;
  if (proto[PATCHED]) return true;
  if (typeof proto.sendWindowUpdate !== "function" || typeof proto.sendData !== "function" || typeof proto.getSendFlags !== "function") return false;

  proto.sendWindowUpdate = function (this: PatchedStream) {
    // readStatus too: a reader that pauses again while resume() hands it the
    // buffered data leaves the stock stream in state Established (resume()
    // calls sendResume() after the dispatch), and it would go on granting
    // window to a paused reader until libp2p aborts the stream for its read
    // buffer (measured: 17 MB buffered behind a client reading 25 MB/s)
    if (this.state === StreamState.Paused || this.readStatus === "paused") {
      // nothing more wanted for now; the clock restarts so a resume does not look slow
      this.epochStart = Date.now();
      return;
    }
    const halfUsed = this.recvWindow - this.recvWindowCapacity >= this.recvWindow / 2;
    if (this.state === StreamState.Established && !halfUsed) return;
    // A new stream's SYN (opener) and ACK (receiver) ride on its first data
    // or FIN frame (getSendFlags adds them there) instead of a frame of their
    // own: every stream we open writes at once, and a proxied connection's
    // first tunnel round trip is then one frame each way.
    if (this.state === StreamState.Init || (this.state === StreamState.SYNReceived && !halfUsed)) return;
    const flags = this.getSendFlags();
    const now = Date.now();
    const rtt = this.getRTT();
    // the reader consumed half a window within 4 round trips: a larger window would be used
    if (flags === 0 && rtt > -1 && now - this.epochStart <= rtt * 4 && this.recvWindow < this.maxStreamWindowSize) {
      const next = Math.min(this.recvWindow * 2, this.maxStreamWindowSize);
      if (budget.take(next - this.recvWindow)) {
        if (this[BORROWED] === undefined) this.addEventListener("close", () => budget.give(this[BORROWED] ?? 0), { once: true });
        this[BORROWED] = (this[BORROWED] ?? 0) + (next - this.recvWindow);
        this.recvWindow = next;
      }
    }
    if (this.recvWindowCapacity >= this.recvWindow && flags === 0) return;
    const delta = this.recvWindow - this.recvWindowCapacity;
    this.recvWindowCapacity = this.recvWindow;
    this.epochStart = now;
    this.sendFrame({ type: 1 /* window update */, flag: flags, streamID: this.streamId, length: delta });
  };

  proto.sendData = function (this: PatchedStream, buf: Uint8ArrayList) {
    let sentBytes = 0;
    let canSendMore = true;
    const conn = this[CONN];
    while (buf.byteLength > 0) {
      if (conn?.writableNeedsDrain) {
        canSendMore = false; // another stream filled the connection: resumes on its drain
        break;
      }
      if (this.sendWindowCapacity === 0) {
        canSendMore = false; // resumes on the peer's window update
        break;
      }
      const n = Math.min(this.sendWindowCapacity, buf.byteLength, MAX_FRAME_BYTES);
      const flag = this.getSendFlags();
      const data = buf.sublist(0, n);
      buf.consume(n);
      const more = this.sendFrame({ type: DATA, flag, streamID: this.streamId, length: n }, data);
      this.sendWindowCapacity -= n;
      sentBytes += n;
      if (!more) {
        canSendMore = false; // the connection is full: resumes on its drain
        break;
      }
    }
    return { sentBytes, canSendMore };
  };
  proto[PATCHED] = true;
  return true;
}

type MuxerFactory = { createStreamMuxer(maConn: unknown): unknown } & Record<string, unknown>;
interface MuxerLike {
  streams: unknown[];
  _newStream?: (...args: unknown[]) => PatchedStream;
}

/**
 * Wraps a yamux factory: each muxer's streams know their connection (so a
 * stream sends only while the connection takes more), and the streams told
 * first of a connection's drain rotate, so busy streams share it in turns.
 */
export function flowControlledYamux<C>(factory: (components: C) => MuxerFactory): (components: C) => MuxerFactory {
  return (components) => {
    const inner = factory(components);
    const wrapped = Object.create(inner) as MuxerFactory;
    wrapped.createStreamMuxer = (maConn: unknown) => {
      const muxer = inner.createStreamMuxer(maConn) as MuxerLike;
      const conn = maConn as ConnLike;
      const newStream = muxer._newStream;
      if (typeof newStream === "function") {
        muxer._newStream = (...args: unknown[]) => {
          const stream = newStream.apply(muxer, args);
          stream[CONN] = conn;
          return stream;
        };
        // after the muxer's own drain listener, which told the streams in order
        conn.addEventListener("drain", () => {
          if (muxer.streams.length > 1) muxer.streams.push(muxer.streams.shift());
        });
      }
      return muxer;
    };
    return wrapped;
  };
}
