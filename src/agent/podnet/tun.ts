// The TUN device, through bun:ffi: /dev/net/tun, TUNSETIFF (IFF_TUN |
// IFF_NO_PI: bare IP packets), non-blocking. The device lives as long as our
// descriptor: a crashed agent leaves no device (and so no routes) behind.
//
// Reading: Bun's streams over a descriptor glue reads together (one chunk
// held 500 packets), so packet boundaries would be lost. A worker thread
// polls the descriptor and reads one packet per read(), into a ring of slots
// in shared memory, and posts the slot number; the main thread never
// blocks. At most SLOTS batches are in flight: when the main thread falls
// behind, the worker waits, the kernel's queue for the device fills, and the
// kernel drops (and counts) further packets: memory stays bounded.
// Writing: one write() per packet from the main thread (a TUN write does not block).
import { dlopen, FFIType, ptr, toArrayBuffer } from "bun:ffi";
import { MAX_UNIT, writeLen } from "./unit-frames.ts";
import { errnoName } from "../../tunnel/transport/libc-socket.ts";

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

/** the worker's code: a Blob URL works the same from sources and from the compiled binary */
const READER_SOURCE = `
import { dlopen, FFIType, ptr } from "bun:ffi";
const c = dlopen("libc.so.6", {
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
}).symbols;
self.onmessage = (e) => {
  const { fd, ring, ctlBuf, slots, slotBytes } = e.data;
  const ctl = new Int32Array(ctlBuf);
  const bytes = new Uint8Array(ring);
  const pfd = new Uint8Array(8);
  const dv = new DataView(pfd.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, 1, true); // POLLIN
  let seq = 0;
  while (Atomics.load(ctl, 0) === 0) {
    const inFlight = Atomics.load(ctl, 1);
    if (inFlight >= slots) { Atomics.wait(ctl, 1, inFlight, 200); continue; }
    dv.setInt16(6, 0, true);
    if (c.poll(ptr(pfd), 1, 200) <= 0) continue;
    const slot = seq % slots;
    const base = slot * slotBytes;
    let off = 0;
    // one unit per read(), each behind its u32 length, until none is left or the slot is nearly full
    while (slotBytes - off > 65700) {
      const got = Number(c.read(fd, ptr(bytes, base + off + 4), 65600));
      if (got <= 0) break;
      // larger than a GSO packet can be: not ours to carry (counted)
      if (got > 65545) { Atomics.add(ctl, 2, 1); continue; }
      bytes[base + off] = 0;
      bytes[base + off + 1] = got >>> 16;
      bytes[base + off + 2] = (got >>> 8) & 255;
      bytes[base + off + 3] = got & 255;
      off += 4 + got;
    }
    if (off === 0) continue;
    ctl[3 + slot] = off;
    seq++;
    Atomics.add(ctl, 1, 1);
    postMessage(slot);
  }
  postMessage(-1);
};
`;

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

  /**
   * starts the reader; `onBatch` gets a view of `[u32 length][unit]...`
   * that is valid only during the call (the slot is reused afterwards)
   */
  startReading(onBatch: (batch: Uint8Array) => void): void {
    this.ring = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
    const ctlBuf = new SharedArrayBuffer(CTL_WORDS * 4);
    const ctl = (this.ctl = new Int32Array(ctlBuf));
    const bytes = new Uint8Array(this.ring);
    const url = URL.createObjectURL(new Blob([READER_SOURCE], { type: "application/javascript" }));
    const w = (this.reader = new Worker(url));
    w.onmessage = (e: MessageEvent<number>) => {
      const slot = e.data;
      if (slot < 0) return;
      try {
        if (!this.closed) onBatch(bytes.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + ctl[3 + slot]!));
      } finally {
        Atomics.sub(ctl, 1, 1);
        Atomics.notify(ctl, 1);
      }
    };
    w.postMessage({ fd: this.fd, ring: this.ring, ctlBuf, slots: SLOTS, slotBytes: SLOT_BYTES });
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
    let off = 0;
    for (let n = 0; n < max && SLOT_BYTES - off > 65700; n++) {
      const got = Number(c.read(this.fd, ptr(buf, off + 4), 65600));
      if (got <= 0 || got > MAX_UNIT) break;
      writeLen(buf, off, got);
      off += 4 + got;
    }
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
    if (this.ctl) {
      Atomics.store(this.ctl, 0, 1);
      Atomics.notify(this.ctl, 1);
    }
    const w = this.reader;
    if (w) {
      // the worker leaves its poll within 200 ms; then the descriptor may close under no read
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
  }
}
