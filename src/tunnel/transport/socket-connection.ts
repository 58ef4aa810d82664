// A MultiaddrConnection over a connected node:net socket, for the sockets our
// transport dials itself (@libp2p/tcp keeps its own version private). Bytes
// in go to onData; writes report back-pressure; the socket's end, close and
// errors end the connection the way libp2p expects.
import type { Socket } from "node:net";
import type { Logger } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import { AbstractMultiaddrConnection } from "@libp2p/utils";

type SendList = Parameters<AbstractMultiaddrConnection["sendData"]>[0];
type SendResult = ReturnType<AbstractMultiaddrConnection["sendData"]>;

export class SocketConnection extends AbstractMultiaddrConnection {
  constructor(
    private readonly socket: Socket,
    init: { remoteAddr: Multiaddr; direction: "inbound" | "outbound"; log: Logger },
  ) {
    super({ remoteAddr: init.remoteAddr, direction: init.direction, log: init.log });
    socket.on("data", (buf: Uint8Array) => this.onData(buf));
    // an error always arrives here, so Bun never sees an unhandled 'error'
    socket.on("error", (err) => this.abort(err));
    // edge links can be quiet for long stretches: the connection monitor's
    // pings, not an inactivity timer, decide when a peer is gone
    socket.setTimeout(0);
    socket.once("end", () => this.onTransportClosed());
    socket.once("close", (hadError) => {
      if (hadError) this.abort(new Error("TCP transmission error"));
      else this.onTransportClosed();
    });
    socket.on("drain", () => this.safeDispatchEvent("drain"));
  }

  override sendData(data: SendList): SendResult {
    let sentBytes = 0;
    for (const buf of data) {
      sentBytes += buf.byteLength;
      if (!this.socket.write(buf)) return { sentBytes, canSendMore: false };
    }
    return { sentBytes, canSendMore: true };
  }

  override async sendClose(options?: { signal?: AbortSignal }): Promise<void> {
    if (this.socket.destroyed) return;
    const closed = new Promise<void>((resolve, reject) => {
      this.socket.once("close", () => resolve());
      options?.signal?.addEventListener("abort", () => reject(options.signal?.reason), { once: true });
    });
    this.socket.destroySoon();
    await closed;
  }

  override sendReset(): void {
    if (this.socket.writableEnded) this.socket.destroy();
    else this.socket.resetAndDestroy();
  }

  override sendPause(): void {
    this.socket.pause();
  }

  override sendResume(): void {
    this.socket.resume();
  }
}
