// Stock @chainsafe/libp2p-yamux answers every data frame a stream consumes
// with a window update frame: for small messages (an interactive session, a
// request/response) that doubles the frames, encryptions and socket writes in
// the reverse direction (measured: per 64-byte echo, one 94-byte data frame
// and one 30-byte window update on the wire). hashicorp/yamux, the protocol's
// origin, waits until half of the window has been consumed; so do we.
// Likewise a new stream's SYN and ACK wait for its first data frame instead of
// taking a frame of their own (yamux allows the flags on any frame).
// Patched on the stream class (exported as @chainsafe/libp2p-yamux/stream),
// once, from our code; paused streams keep the stock path (their update
// restarts the window's clock).
import { StreamState, YamuxStream } from "@chainsafe/libp2p-yamux/stream";

const PATCHED = Symbol.for("edgemesh.yamux.batchedWindowUpdates");

interface WindowState {
  state: StreamState;
  recvWindow: number;
  recvWindowCapacity: number;
}

/** installs the batching; false when the stream class no longer looks as expected (stock behaviour stays) */
export function batchWindowUpdates(): boolean {
  const proto = YamuxStream.prototype as unknown as Record<PropertyKey, unknown> & { sendWindowUpdate?: (this: WindowState) => void };
  if (proto[PATCHED]) return true;
  const original = proto.sendWindowUpdate;
  if (typeof original !== "function") return false;
  proto.sendWindowUpdate = function (this: WindowState) {
    const halfUsed = this.recvWindow - this.recvWindowCapacity >= this.recvWindow / 2;
    if (this.state === StreamState.Established && !halfUsed) return;
    // A new stream's SYN (opener) and ACK (receiver) ride on its first data
    // or FIN frame (getSendFlags adds them there) instead of a frame of their
    // own: every stream we open writes at once, and a proxied connection's
    // first tunnel round trip is then one frame each way.
    if (this.state === StreamState.Init || (this.state === StreamState.SYNReceived && !halfUsed)) return;
    original.call(this);
  };
  proto[PATCHED] = true;
  return true;
}
