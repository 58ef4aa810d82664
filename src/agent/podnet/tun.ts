// The TUN device, through bun:ffi: /dev/net/tun, TUNSETIFF (IFF_TUN |
// IFF_NO_PI: bare IP packets), non-blocking. The device lives as long as our
// descriptor: a crashed agent leaves no device (and so no routes) behind.
//
// Reading: Bun's streams over a descriptor glue reads together (one chunk
// held 500 packets), so packet boundaries would be lost. A reader thread
// (tun-worker.ts) polls the descriptor and reads one packet per read(); it
// also owns the datagram lane's UDP socket. The main thread never blocks.
// Writing: one write() per packet from the main thread (a TUN write does not block).
import { dlopen, FFIType, ptr, toArrayBuffer } from "bun:ffi";
import { readUnits } from "./unit-frames.ts";
import { errnoName, openUdpSocket } from "../../tunnel/transport/libc-socket.ts";
import type { WorkerEvent, WorkerMessage } from "./tun-protocol.ts";

const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const TUNSETOFFLOAD = 0x400454d0;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;

export const SLOTS = 16;
export const SLOT_BYTES = 256 * 1024;
/** control words: [stop, in flight, units too large to frame, slot lengths...] */
const CTL_WORDS = 3 + SLOTS;

type Libc = {
  open(path: Uint8Array, flags: number): number;
  ioctl(fd: number, req: number, arg: unknown): number;
  write(fd: number, buf: unknown, len: number): number | bigint;
  read(fd: number, buf: unknown, len: number): number | bigint;
  close(fd: number): number;
  pipe2(fds: unknown, flags: number): number;
};
let libc: Libc | undefined;
let errnoOf: (() => number) | undefined;

function lib(): Libc {
  if (!libc) {
    const l = dlopen("libc.so.6", {
      open: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
      ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
      write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
      read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
      close: { args: [FFIType.i32], returns: FFIType.i32 },
      pipe2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    });
    libc = l.symbols as unknown as Libc;
    const loc = l.symbols.__errno_location;
    errnoOf = () => new Int32Array(toArrayBuffer(loc()!, 0, 4))[0]!;
  }
  return libc;
}

/** what an operator does about the errors opening a TUN gives; others by name */
const ERRNO_HINT: Record<number, string> = { 1: "EPERM (needs root or CAP_NET_ADMIN)", 2: "ENOENT (no /dev/net/tun: load the tun module)", 13: "EACCES", 16: "EBUSY (the device exists and is not ours)", 19: "ENODEV" };
const errnoText = (e: number) => ERRNO_HINT[e] ?? errnoName(e);

/** the reader thread's module: beside this file in sources; in the compiled binary, where scripts/build.sh puts it */
function readerUrl(): string {
  return import.meta.url.startsWith("file:///$bunfs/") ? "./agent/podnet/tun-worker.ts" : new URL("./tun-worker.ts", import.meta.url).href;
}

const WAKE_BYTE = new Uint8Array(1);

export class TunDevice {
  private reader?: Worker;
  private ring?: SharedArrayBuffer;
  private ctl?: Int32Array;
  closed = false;
  /** units read larger than a GSO packet can be (dropped) */
  get oversized(): number {
    return this.ctl ? Atomics.load(this.ctl, 2) : 0;
  }

  private constructor(
    readonly name: string,
    readonly fd: number,
  ) {}

  /**
   * creates (or attaches to our own earlier) TUN device `name`; with
   * `offload`, packets carry a virtio-net header and TCP comes in GSO
   * batches (vnet.ts); false when the kernel refused the offload
   */
  static open(name: string, offload = true): TunDevice {
    const c = lib();
    const fd = c.open(new TextEncoder().encode("/dev/net/tun\0"), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw new Error(`cannot open /dev/net/tun: ${errnoText(errnoOf!())}`);
    const ifr = new Uint8Array(40);
    ifr.set(new TextEncoder().encode(name).subarray(0, 15));
    new DataView(ifr.buffer).setUint16(16, IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0), true);
    if (c.ioctl(fd, TUNSETIFF, ptr(ifr) as unknown as number) < 0) {
      const e = errnoOf!();
      c.close(fd);
      throw new Error(`cannot create TUN device ${name}: ${errnoText(e)}`);
    }
    const dev = new TunDevice(name, fd);
    // TUNSETOFFLOAD takes its flags as the argument's value, not through a pointer
    if (offload && c.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) < 0) dev.offloadError = errnoText(errnoOf!());
    return dev;
  }

  /** why the kernel refused TSO (packets still carry the header, one per packet) */
  offloadError?: string;

  private wakeFds?: Int32Array;
  private udpFd = -1;

  /**
   * opens the lane's UDP socket on `port` (all addresses) for the reader
   * thread; call before startReading. Throws with the reason (e.g. the port is taken).
   */
  openLane(port: number): void {
    this.udpFd = openUdpSocket(port);
  }

  /**
   * starts the reader thread; `onBatch` gets a view of `[u32 length][unit]...`
   * that is valid only during the call (the slot is reused afterwards);
   * `onEvent` gets the lane's events
   */
  startReading(onBatch: (batch: Uint8Array) => void, opts: { self: string; mtu: number; onEvent?: (e: WorkerEvent) => void; onError?: (message: string) => void }): void {
    this.ring = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
    const ctlBuf = new SharedArrayBuffer(CTL_WORDS * 4);
    const ctl = (this.ctl = new Int32Array(ctlBuf));
    const bytes = new Uint8Array(this.ring);
    const fds = (this.wakeFds = new Int32Array(2));
    if (lib().pipe2(ptr(fds), O_NONBLOCK | O_CLOEXEC) !== 0) throw new Error(`cannot make a pipe: ${errnoText(errnoOf!())}`);
    const w = (this.reader = new Worker(readerUrl()));
    w.onerror = (e) => opts.onError?.(e.message);
    w.onmessage = (e: MessageEvent<number | WorkerEvent>) => {
      const slot = e.data;
      if (typeof slot !== "number") return opts.onEvent?.(slot);
      if (slot < 0) return;
      try {
        if (!this.closed) onBatch(bytes.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + ctl[3 + slot]!));
      } finally {
        Atomics.sub(ctl, 1, 1);
      }
    };
    this.post({ op: "start", fd: this.fd, ring: this.ring, ctlBuf, slots: SLOTS, slotBytes: SLOT_BYTES, udpFd: this.udpFd, wakeFd: fds[0]!, self: opts.self, mtu: opts.mtu });
  }

  /** whether a lane socket is open (openLane) */
  get laneOpen(): boolean {
    return this.udpFd >= 0;
  }

  /** a message to the reader thread, which it reads at once (it is woken through the pipe) */
  post(m: WorkerMessage): void {
    if (!this.reader || this.closed) return;
    this.reader.postMessage(m);
    lib().write(this.wakeFds![1]!, ptr(WAKE_BYTE), 1);
  }

  private nowBuf?: Uint8Array;

  /**
   * reads, on the calling thread, what the device holds now (non-blocking, up
   * to `max` packets), in the reader's batch format; empty when nothing waits.
   * Right after we write a packet, the host's answer to it (a pod's reply,
   * made while our write ran) is often already queued: taking it here saves
   * the reader thread's wake-up and hand-over, the larger part of the RTT we add.
   */
  readNow(max = 64): Uint8Array {
    if (this.closed) return new Uint8Array(0);
    const buf = (this.nowBuf ??= new Uint8Array(SLOT_BYTES));
    const c = lib();
    const { off } = readUnits((at, len) => Number(c.read(this.fd, ptr(buf, at), len)), buf, 0, buf.byteLength, {
      maxReads: max,
      oversized: () => void (this.ctl && Atomics.add(this.ctl, 2, 1)),
    });
    return buf.subarray(0, off);
  }

  /** writes one packet to the host's stack; false when the kernel refused it (the caller counts it) */
  write(packet: Uint8Array): boolean {
    if (this.closed) return false;
    return Number(lib().write(this.fd, ptr(packet), packet.byteLength)) === packet.byteLength;
  }

  /** stops the reader and closes the descriptor: the device and its routes go with it */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ctl) Atomics.store(this.ctl, 0, 1);
    if (this.wakeFds) lib().write(this.wakeFds[1]!, ptr(WAKE_BYTE), 1);
    const w = this.reader;
    if (w) {
      // the reader leaves its poll at once (woken through the pipe); then the descriptors may close under no read
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        w.addEventListener("message", (e: MessageEvent<number>) => {
          if (e.data === -1) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      w.terminate();
    }
    lib().close(this.fd);
    if (this.udpFd >= 0) lib().close(this.udpFd);
    if (this.wakeFds) for (const fd of this.wakeFds) lib().close(fd);
  }
}
