// TCP sockets on Bun's own socket API, with the node:net behaviour the pipes
// rely on (ByteSocket). node:net under Bun wraps the same native socket in a
// Duplex stream; for a proxy that only moves bytes, that layer costs
// measurable time on every new connection (BENCHMARKS.md: the bare relays'
// floor, and the same-run A/B of 2026-11-30). What this keeps of node:net:
// - reading starts paused: nothing is emitted before resume(), and bytes
//   that come meanwhile are held (and the native socket paused);
// - 'end' (the peer's FIN) comes after every byte before it, and readableEnded
//   says it was emitted; a socket is always half-open capable;
// - write() takes every chunk and returns false while some are queued; 'drain'
//   says the queue is out; end() sends FIN after the queue (shutdown(2), so
//   reading goes on); destroy() closes; resetAndDestroy() sends an RST;
// - 'error' then 'close' (hadError) on a reset, 'close' after 'end' on an
//   orderly close, both on the next tick as node:net does.
import { EventEmitter } from "node:events";
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { ByteSocket } from "./byte-socket.ts";

type Native = Socket<BunTcpSocket | undefined>;

export class BunTcpSocket extends EventEmitter implements ByteSocket {
  allowHalfOpen = true;
  private native?: Native;
  private flowing = false;
  private readonly held: Buffer[] = [];
  private readonly queue: Uint8Array[] = [];
  private remoteEnded = false;
  private endEmitted = false;
  private ending = false;
  private shut = false;
  private closeAfterEnd = false;
  private isDestroyed = false;
  /** the native socket is paused lazily: on the first chunk that comes while we are paused */
  private nativePaused = false;
  /** set when a dial was given up: the socket is closed as soon as it connects */
  abandoned = false;

  get destroyed(): boolean {
    return this.isDestroyed;
  }
  get writable(): boolean {
    return !this.isDestroyed && !this.ending;
  }
  get readableEnded(): boolean {
    return this.endEmitted;
  }
  get remoteAddress(): string | undefined {
    return this.native?.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.native?.remotePort;
  }

  /** @internal called from the handlers once the native socket is open */
  attach(native: Native): void {
    this.native = native; // Bun sets TCP_NODELAY itself
    if (this.queue.length > 0 || this.ending) this.onDrain(); // written or ended before the connect completed
  }

  write(chunk: Uint8Array): boolean {
    if (this.isDestroyed || this.ending) return false;
    if (this.queue.length > 0 || !this.native) {
      this.queue.push(chunk);
      return false;
    }
    const n = this.native.write(chunk);
    if (n === chunk.byteLength) return true;
    if (n < 0) return false; // closing: the close handler reports it
    this.queue.push(n === 0 ? chunk : chunk.subarray(n));
    return false;
  }

  end(): void {
    if (this.isDestroyed || this.ending) return;
    this.ending = true;
    if (this.queue.length === 0 && this.native) this.shutdown();
  }

  destroy(err?: Error): void {
    if (this.isDestroyed) return;
    this.discard();
    this.native?.end(); // closes at once (it is not a half-close in Bun)
    this.emitClose(err);
  }

  resetAndDestroy(): this {
    if (this.isDestroyed) return this;
    this.discard();
    this.native?.terminate(); // SO_LINGER 0: the peer sees ECONNRESET
    this.emitClose();
    return this;
  }

  pause(): this {
    this.flowing = false;
    return this;
  }

  resume(): this {
    if (this.isDestroyed) return this;
    this.flowing = true;
    // a listener may pause again while held bytes are delivered
    while (this.flowing && this.held.length > 0) this.emit("data", this.held.shift()!);
    if (!this.flowing) return this;
    if (this.remoteEnded) this.emitEnd();
    else if (this.nativePaused) {
      this.nativePaused = false;
      this.native?.resume();
    }
    return this;
  }

  setNoDelay(on = true): this {
    this.native?.setNoDelay(on);
    return this;
  }

  // ---- from the native handlers

  /** @internal */
  onData(chunk: Buffer): void {
    if (this.isDestroyed) return;
    if (this.flowing && this.held.length === 0) this.emit("data", chunk);
    else {
      this.held.push(chunk);
      if (!this.nativePaused) {
        this.nativePaused = true;
        this.native?.pause();
      }
    }
  }

  /** @internal */
  onEnd(): void {
    this.remoteEnded = true;
    if (this.flowing && this.held.length === 0) this.emitEnd();
  }

  /** @internal */
  onDrain(): void {
    const native = this.native;
    if (!native || this.isDestroyed) return;
    while (this.queue.length > 0) {
      const chunk = this.queue[0]!;
      const n = native.write(chunk);
      if (n < 0) return;
      if (n < chunk.byteLength) {
        this.queue[0] = chunk.subarray(n);
        return;
      }
      this.queue.shift();
    }
    if (this.ending) this.shutdown();
    this.emit("drain");
  }

  /** @internal */
  onClose(err?: Error): void {
    if (this.isDestroyed) return;
    if (err) {
      this.discard();
      this.emitClose(err);
      return;
    }
    // Bun closes a socket cleanly once both sides sent FIN, without an 'end'
    // call when ours went first: the peer's FIN is implied
    this.remoteEnded = true;
    if (this.flowing && this.held.length === 0) this.emitEnd();
    if (this.endEmitted) this.finishClose();
    else this.closeAfterEnd = true;
  }

  /** closed for good: bytes held for the reader and queued for the peer are dropped */
  private discard(): void {
    this.isDestroyed = true;
    this.held.length = 0;
    this.queue.length = 0;
  }

  private shutdown(): void {
    if (this.shut) return;
    this.shut = true;
    this.native?.shutdown();
  }

  private emitEnd(): void {
    if (this.endEmitted) return;
    this.endEmitted = true;
    this.emit("end");
    if (this.closeAfterEnd) this.finishClose();
  }

  private finishClose(): void {
    if (this.isDestroyed) return;
    this.isDestroyed = true;
    this.emitClose();
  }

  private emitClose(err?: Error): void {
    process.nextTick(() => {
      if (err && this.listenerCount("error") > 0) this.emit("error", err);
      this.emit("close", err !== undefined);
    });
  }
}

function handlers(onOpen?: (s: BunTcpSocket) => void): SocketHandler<BunTcpSocket | undefined> {
  return {
    open(native) {
      let s = native.data;
      if (!s) {
        s = new BunTcpSocket();
        native.data = s;
      }
      if (s.abandoned) {
        native.terminate();
        return;
      }
      s.attach(native);
      onOpen?.(s);
    },
    data: (native, chunk) => native.data?.onData(chunk),
    end: (native) => native.data?.onEnd(),
    drain: (native) => native.data?.onDrain(),
    close: (native, err) => native.data?.onClose(err),
    error: (native, err) => native.data?.onClose(err),
  };
}

export interface TcpListener {
  readonly port: number;
  /** stops accepting; open connections go on */
  close(): void;
}

/** Listens on host:port (0: any free port); accepted sockets start paused. */
export function listenTcp(host: string, port: number, onConnection: (s: BunTcpSocket) => void): TcpListener {
  const listener: TCPSocketListener<BunTcpSocket | undefined> = Bun.listen<BunTcpSocket | undefined>({
    hostname: host,
    port,
    allowHalfOpen: true,
    data: undefined,
    socket: handlers(onConnection),
  });
  return { port: listener.port, close: () => listener.stop(false) };
}

/** one set for every dialled socket: a set per socket would be six more closures per connection */
const connectHandlers = handlers();

/** Connects; resolves once connected (the socket starts paused). */
export function connectTcp(host: string, port: number): { socket: BunTcpSocket; connected: Promise<BunTcpSocket> } {
  const socket = new BunTcpSocket();
  const connected = Bun.connect<BunTcpSocket | undefined>({ hostname: host, port, allowHalfOpen: true, data: socket, socket: connectHandlers }).then(() => socket);
  return { socket, connected };
}
