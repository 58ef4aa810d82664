// Stock @chainsafe/libp2p-yamux answers every data frame a stream consumes
// with a window update frame: for small messages (an interactive session, a
// request/response) that doubles the frames, encryptions and socket writes in
// the reverse direction (measured: per 64-byte echo, one 94-byte data frame
// and one 30-byte window update on the wire). hashicorp/yamux, the protocol's
// origin, waits until half of the window has been consumed; so do we.
// Patched on the stream class (exported as @chainsafe/libp2p-yamux/stream),
// once, from our code; streams still opening or paused keep the stock path
// (their update carries SYN/ACK flags, or restarts the window's clock).
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
    if (this.state === StreamState.Established && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) return;
    original.call(this);
  };
  proto[PATCHED] = true;
  return true;
}
