// A cheap "are you there" on one connection: `/edgemesh/liveness/1.0.0`, a
// stream kept open on which every probe (32 bytes) comes back as it was
// sent, so a probe a second costs 64 bytes, not a new stream and its
// negotiation. Not libp2p's ping protocol: a node keeps one outbound ping
// stream per peer, and a second one (ours) would make the connection
// monitor's own ping fail and abort a healthy connection; and the ping
// handler ends its streams after 10 s.
import type { Connection, Stream } from "@libp2p/interface";
import { flatten } from "./proxy/bytes.ts";
import type { TunnelNode } from "./node.ts";

export const LIVENESS_PROTOCOL = "/edgemesh/liveness/1.0.0";
const SIZE = 32;
/** bytes echoed per message at most: a probe is 32 */
const ECHO_MAX = 64;

/** the answering side, on every node */
export async function serveLiveness(node: TunnelNode): Promise<void> {
  await node.handle(
    LIVENESS_PROTOCOL,
    (stream) => {
      stream.addEventListener("message", (evt) => {
        const data = flatten(evt.data);
        stream.send(data.byteLength > ECHO_MAX ? data.subarray(0, ECHO_MAX) : data);
      });
    },
    { runOnLimitedConnection: true, maxInboundStreams: 4 },
  );
}

export class LivenessPinger {
  private stream?: Stream;
  private waiting?: { need: number; resolve: () => void };
  /** the peer does not speak the protocol (an older release): its answering the negotiation is all we learn */
  private unsupported = false;

  constructor(private readonly conn: Connection) {}

  /** resolves when the peer answered a probe on this connection; rejects on the signal or a dead stream */
  async ping(signal: AbortSignal): Promise<void> {
    const stream = await this.open(signal);
    if (!stream) return;
    let onAbort = (): void => {};
    try {
      await new Promise<void>((resolve, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        this.waiting = { need: SIZE, resolve };
        stream.send(crypto.getRandomValues(new Uint8Array(SIZE)));
      });
    } catch (e) {
      // a late answer would count for the next probe: start afresh
      this.close();
      throw e;
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.waiting = undefined;
    }
  }

  close(): void {
    this.stream?.abort(new Error("liveness probe closed"));
    this.stream = undefined;
  }

  private async open(signal: AbortSignal): Promise<Stream | undefined> {
    if (this.stream?.status === "open") return this.stream;
    if (this.unsupported) return undefined;
    let stream: Stream;
    try {
      stream = await this.conn.newStream(LIVENESS_PROTOCOL, { signal, runOnLimitedConnection: true });
    } catch (e) {
      if ((e as Error).name !== "UnsupportedProtocolError") throw e;
      this.unsupported = true;
      return undefined;
    }
    stream.addEventListener("message", (evt) => {
      const w = this.waiting;
      if (!w) return;
      w.need -= flatten(evt.data).byteLength;
      if (w.need <= 0) w.resolve();
    });
    this.stream = stream;
    return stream;
  }
}

/** one probe on a fresh stream, closed after (for a connection probed once) */
export async function probeOnce(conn: Connection, signal: AbortSignal): Promise<void> {
  const pinger = new LivenessPinger(conn);
  try {
    await pinger.ping(signal);
  } finally {
    pinger.close();
  }
}
