// What an intercepted client sends while its backend is still being asked.
// The socket keeps flowing from accept on: waiting for the far agent's reply
// before reading would cost a whole tunnel round trip on every new
// connection, because the client's first bytes usually arrive just after the
// accept. Every byte is kept until a backend has accepted the connection, so
// one that refuses loses nothing: the next gets the same bytes from the start.
import type { ByteSocket as Socket } from "../../net/byte-socket.ts";
import type { EarlyBytes } from "../../model/tunnel.ts";

/** beyond this the client is paused until a backend has answered */
export const MAX_PREFIX_BYTES = 64 * 1024;

export class ClientPrefix implements EarlyBytes {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  /** chunks [0, sent) went to the current attempt */
  private sent = 0;
  private sink?: (chunk: Uint8Array) => void;
  private released = false;
  private readonly onData = (d: Buffer): void => {
    this.chunks.push(d);
    this.size += d.byteLength;
    if (this.sink) {
      this.sent = this.chunks.length;
      this.sink(d);
    }
    if (this.size >= MAX_PREFIX_BYTES) this.client.pause();
  };

  constructor(private readonly client: Socket) {
    client.on("data", this.onData);
    client.resume();
  }

  /** bytes held so far */
  get byteLength(): number {
    return this.size;
  }

  read(): Uint8Array | undefined {
    this.sent = this.chunks.length;
    if (this.size === 0) return undefined;
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
  }

  follow(send: (chunk: Uint8Array) => void): () => void {
    this.sink = send;
    return () => {
      if (this.sink === send) this.sink = undefined;
    };
  }

  /**
   * Hands the client over to the pipe: stops listening and pauses it (the pipe
   * resumes it), and returns the bytes the chosen backend has not been sent.
   */
  release(): Uint8Array | undefined {
    if (this.released) return undefined;
    this.released = true;
    this.sink = undefined;
    this.client.off("data", this.onData);
    this.client.pause();
    const rest = this.chunks.slice(this.sent);
    this.chunks.length = 0;
    if (rest.length === 0) return undefined;
    return rest.length === 1 ? rest[0]! : Buffer.concat(rest);
  }
}
