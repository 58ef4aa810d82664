// A bound, non-blocking UDP socket made with libc, for a reader thread that
// polls it through bun:ffi (Bun's own UDP sockets live on the main thread's
// event loop). IPv4, all addresses.
import { dlopen, FFIType, ptr, toArrayBuffer } from "bun:ffi";
import { errnoName, LINUX, sockaddrIn } from "./libc-socket.ts";

const SOCK_DGRAM = 2;

let libc: { socket(d: number, t: number, p: number): number; bind(fd: number, a: unknown, l: number): number; close(fd: number): number; errno(): number } | undefined;

function lib(): NonNullable<typeof libc> {
  if (!libc) {
    const l = dlopen("libc.so.6", {
      socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
      bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
      close: { args: [FFIType.i32], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    }).symbols;
    libc = { socket: l.socket, bind: l.bind as never, close: l.close, errno: () => new Int32Array(toArrayBuffer(l.__errno_location()!, 0, 4))[0]! };
  }
  return libc;
}

/** the descriptor of a UDP socket bound to `port`; throws with the reason (e.g. the port is taken) */
export function openUdpSocket(port: number): number {
  const c = lib();
  const fd = c.socket(LINUX.AF_INET, SOCK_DGRAM | LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`cannot open a UDP socket: ${errnoName(c.errno())}`);
  const addr = sockaddrIn("0.0.0.0", port);
  if (c.bind(fd, ptr(addr), addr.byteLength) !== 0) {
    const e = c.errno();
    c.close(fd);
    throw new Error(`cannot bind UDP port ${port}: ${errnoName(e)}`);
  }
  return fd;
}

export function closeFd(fd: number): void {
  lib().close(fd);
}
