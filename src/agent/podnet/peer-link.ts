// Packets to one peer: a framed stream (`[u32 length][unit]`, unit-frames.ts)
// on whatever connection the tunnel prefers for that node. When that changes (relayed → direct after a punch) the next
// packets go on a new stream over the new connection and the old stream is
// closed once its bytes are out: IP tolerates the brief reordering, and no
// flow is cut. Bounded: packets wait for a busy stream up to `maxQueueBytes`,
// then are dropped and counted, as a router's queue does.
import type { Stream } from "@libp2p/interface";
import { LEN_BYTES, MAX_UNIT, writeLen } from "./unit-frames.ts";
import type { NodeStream, TunnelAccess } from "../../model/tunnel.ts";
import type { Logger } from "../../log.ts";

export const PODNET_PROTOCOL = "/edgemesh/podnet/1.0.0";
/** after a failed open, packets to the node are dropped for this long instead of dialling per packet */
const OPEN_BACKOFF_MS = 1000;
/** how often the path is checked against the tunnel's preferred connection (ms) */
const PATH_CHECK_MS = 100;
/** framed packets are copied into chunks of this size */
const CHUNK_BYTES = 64 * 1024;
/** the stream's own buffer above which we stop handing it more */
const STREAM_HIGH_WATER = 256 * 1024;

export type SendDrop = "queue" | "unreachable";

export interface LinkCounters {
  packetsOut: number;
  bytesOut: number;
}

export class PeerLink {
  /** framed packets waiting for the stream: full chunks, then the open one (filled to `fill`) */
  private queue: Uint8Array[] = [];
  private fill = 0;
  private queuedBytes = 0;
  private queuedPackets = 0;
  private current?: NodeStream;
  private opening = false;
  private waitingDrain = false;
  /** when the preferred connection was last asked for (performance.now()) */
  private checkedAt = -Infinity;
  private backoffUntil = 0;
  private closed = false;
  readonly counters: LinkCounters = { packetsOut: 0, bytesOut: 0 };

  constructor(
    readonly node: string,
    private readonly tunnel: TunnelAccess,
    private readonly maxQueueBytes: number,
    private readonly log: Logger,
    private readonly onDrop: (reason: SendDrop, packets: number) => void,
    /** the stream in use and its connection: at each open, and at each path check while packets flow */
    private readonly onStream?: (ns: NodeStream) => void,
  ) {}

  get path(): "direct" | "relayed" | undefined {
    return this.current?.path;
  }

  /**
   * queues one packet (copied: the caller's buffer is reused), framed into
   * the open chunk: one copy, and one allocation per CHUNK_BYTES, not per packet
   */
  send(packet: Uint8Array): void {
    if (this.closed) return;
    if (Date.now() < this.backoffUntil) return this.onDrop("unreachable", 1);
    const need = packet.byteLength + LEN_BYTES;
    if (packet.byteLength > MAX_UNIT) return this.onDrop("queue", 1);
    if (this.queuedBytes + need > this.maxQueueBytes) return this.onDrop("queue", 1);
    let chunk = this.queue.at(-1);
    if (!chunk || this.fill + need > chunk.byteLength) {
      if (chunk) this.queue[this.queue.length - 1] = chunk.subarray(0, this.fill);
      chunk = new Uint8Array(Math.max(CHUNK_BYTES, need));
      this.queue.push(chunk);
      this.fill = 0;
    }
    writeLen(chunk, this.fill, packet.byteLength);
    chunk.set(packet, this.fill + LEN_BYTES);
    this.fill += need;
    this.queuedBytes += need;
    this.queuedPackets++;
  }

  /** sends what is queued (callers queue a batch, then flush once) */
  flush(): void {
    if (this.closed || this.waitingDrain || this.opening || this.queue.length === 0) return;
    // the connection new streams should take, asked at most every PATH_CHECK_MS (a move need not be instant)
    const now = performance.now();
    if (now - this.checkedAt > PATH_CHECK_MS || !this.usable(this.current)) {
      this.checkedAt = now;
      const preferred = this.tunnel.preferredConnection(this.node);
      if (!this.usable(this.current) || (preferred !== undefined && preferred !== this.current.connectionId)) return this.reopen();
      // told again while the path stays: a lane lost meanwhile (its exchange refused, its lease closed) is offered anew
      this.onStream?.(this.current);
    }
    this.sendQueued(this.current!.stream);
  }

  private usable(s: NodeStream | undefined): s is NodeStream {
    return !!s && s.stream.status === "open" && s.stream.writeStatus === "writable";
  }

  private sendQueued(stream: Stream): void {
    const chunks = this.queue;
    chunks[chunks.length - 1] = chunks.at(-1)!.subarray(0, this.fill);
    const packets = this.queuedPackets;
    const bytes = this.queuedBytes;
    this.clearQueue();
    let more = true;
    try {
      for (const c of chunks) more = stream.send(c);
    } catch (err) {
      this.onDrop("unreachable", packets);
      this.log.debug("pod network stream failed", { node: this.node, error: (err as Error).message });
      return this.reopen();
    }
    this.counters.packetsOut += packets;
    this.counters.bytesOut += bytes - LEN_BYTES * packets;
    if (!more || stream.writeBufferLength > STREAM_HIGH_WATER) this.waitForDrain(stream);
  }

  private waitForDrain(stream: Stream): void {
    this.waitingDrain = true;
    const done = () => {
      stream.removeEventListener("drain", done);
      stream.removeEventListener("close", done);
      this.waitingDrain = false;
      this.flush();
    };
    stream.addEventListener("drain", done);
    stream.addEventListener("close", done);
  }

  private reopen(): void {
    if (this.opening || this.closed) return;
    this.opening = true;
    this.tunnel.openStream(this.node, PODNET_PROTOCOL).then(
      (ns) => {
        const old = this.current;
        this.current = ns;
        if (old && old.connectionId !== ns.connectionId) this.log.info("pod network path moved", { node: this.node, path: ns.path });
        else if (!old) this.log.info("pod network link up", { node: this.node, path: ns.path });
        // closing sends what is buffered first; the far side keeps reading it
        if (old) old.stream.close().catch(() => old.stream.abort(new Error("replaced")));
        this.checkedAt = performance.now();
        // the far side never sends on this stream: a read would only hold it
        ns.stream.addEventListener("message", () => {});
        this.onStream?.(ns);
      },
      (err: Error) => {
        this.backoffUntil = Date.now() + OPEN_BACKOFF_MS;
        const n = this.queuedPackets;
        this.clearQueue();
        this.onDrop("unreachable", n);
        this.log.warn("pod network: node unreachable, its packets are dropped for a second", { node: this.node, error: err.message });
      },
    ).finally(() => {
      this.opening = false;
      this.flush();
    });
  }

  private clearQueue(): void {
    this.queue = [];
    this.fill = 0;
    this.queuedBytes = 0;
    this.queuedPackets = 0;
  }

  close(): void {
    this.closed = true;
    this.clearQueue();
    const s = this.current?.stream;
    if (s) s.close().catch(() => s.abort(new Error("pod network stopped")));
  }
}
