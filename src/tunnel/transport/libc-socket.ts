// Outgoing TCP sockets bound to our listening port, made with libc through
// bun:ffi. Node and Bun give no way to set SO_REUSEPORT on an outgoing
// socket, and without it a dial cannot leave from the port we listen on, so
// a NAT never holds the mapping a peer's hole-punching SYN needs (DESIGN §7).
// We make the socket ourselves (non-blocking, SO_REUSEADDR + SO_REUSEPORT,
// bound to the listen port), connect, wait until it is writable, check
// SO_ERROR, and hand the connected descriptor to Bun with net.connect({fd}).
//
// Constants and struct layouts are those of Linux on x86-64 and arm64, which
// share asm-generic/socket.h, asm-generic/errno.h and asm-generic/fcntl.h
// (checked against the kernel headers; test/tunnel/libc-socket.test.ts pins
// them). Any other platform or libc that does not load: `available()` is
// false and callers dial the ordinary way.
import { dlopen, FFIType, read, type Pointer } from "bun:ffi";

/** Linux constants, identical on x86-64 and arm64 (asm-generic) */
export const LINUX = {
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  SOCK_NONBLOCK: 0o4000, // = O_NONBLOCK, asm-generic/fcntl.h
  SOCK_CLOEXEC: 0o2000000, // = O_CLOEXEC
  SOL_SOCKET: 1,
  SO_REUSEADDR: 2,
  SO_ERROR: 4,
  SO_REUSEPORT: 15,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_SNDBUFFORCE: 32,
  SO_RCVBUFFORCE: 33,
  IPPROTO_TCP: 6,
  POLLOUT: 0x004,
  POLLERR: 0x008,
  POLLHUP: 0x010,
  EAGAIN: 11,
  EINTR: 4,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETUNREACH: 101,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
} as const;

/** the architectures whose layout this file encodes */
export const SUPPORTED_ARCHES = ["x64", "arm64"] as const;

const ERRNO_NAMES: Record<number, string> = {
  [LINUX.EAGAIN]: "EAGAIN",
  [LINUX.EINTR]: "EINTR",
  [LINUX.EADDRINUSE]: "EADDRINUSE",
  [LINUX.EADDRNOTAVAIL]: "EADDRNOTAVAIL",
  [LINUX.ENETUNREACH]: "ENETUNREACH",
  [LINUX.ECONNRESET]: "ECONNRESET",
  [LINUX.ETIMEDOUT]: "ETIMEDOUT",
  [LINUX.ECONNREFUSED]: "ECONNREFUSED",
  [LINUX.EHOSTUNREACH]: "EHOSTUNREACH",
  [LINUX.EALREADY]: "EALREADY",
  [LINUX.EINPROGRESS]: "EINPROGRESS",
};

export function errnoName(n: number): string {
  return ERRNO_NAMES[n] ?? `errno ${n}`;
}

/**
 * struct sockaddr_in (16 bytes): sa_family_t sin_family (u16, host order:
 * little-endian on both arches), in_port_t sin_port (u16, network order),
 * struct in_addr sin_addr (4 bytes, network order), 8 bytes of zero.
 */
export function sockaddrIn(host: string, port: number): Uint8Array {
  const parts = host.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${host}`);
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, LINUX.AF_INET, true);
  v.setUint16(2, port, false);
  b.set(parts, 4);
  return b;
}

/** the 16 bytes of an IPv6 address (handles "::" and an embedded IPv4 tail) */
export function ipv6Bytes(host: string): Uint8Array {
  let h = host.replace(/^\[|\]$/g, "").split("%")[0]!;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (v4) {
    const p = v4[1]!.split(".").map(Number);
    h = h.slice(0, -v4[1]!.length) + `${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [head, tail] = h.includes("::") ? h.split("::") : [h, undefined];
  const hs = head ? head.split(":") : [];
  const ts = tail ? tail.split(":") : [];
  const groups = tail === undefined ? hs : [...hs, ...Array(8 - hs.length - ts.length).fill("0"), ...ts];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) throw new Error(`not an IPv6 address: ${host}`);
  const b = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    b[i * 2] = n >> 8;
    b[i * 2 + 1] = n & 0xff;
  });
  return b;
}

/**
 * struct sockaddr_in6 (28 bytes): u16 sin6_family (host order), u16 sin6_port
 * (network order), u32 sin6_flowinfo, 16 bytes sin6_addr, u32 sin6_scope_id.
 */
export function sockaddrIn6(host: string, port: number): Uint8Array {
  const b = new Uint8Array(28);
  const v = new DataView(b.buffer);
  v.setUint16(0, LINUX.AF_INET6, true);
  v.setUint16(2, port, false);
  b.set(ipv6Bytes(host), 8);
  return b;
}

const SYMBOLS = {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  // struct pollfd { int fd; short events; short revents; } = 8 bytes
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
} as const;

type Libc = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];

const LIBC_CANDIDATES = ["libc.so.6", "libc.so"];

let loaded: { libc?: Libc; reason: string } | undefined;

/** libc, or why not (platform, architecture, library) */
function load(): { libc?: Libc; reason: string } {
  if (loaded) return loaded;
  if (process.platform !== "linux") return (loaded = { reason: `platform ${process.platform} is not linux` });
  if (!(SUPPORTED_ARCHES as readonly string[]).includes(process.arch)) return (loaded = { reason: `architecture ${process.arch} is not one whose socket layout we encode (${SUPPORTED_ARCHES.join(", ")})` });
  const reasons: string[] = [];
  for (const name of LIBC_CANDIDATES) {
    try {
      return (loaded = { libc: dlopen(name, SYMBOLS).symbols, reason: "" });
    } catch (e) {
      reasons.push(`${name}: ${String((e as Error).message ?? e).split("\n")[0]}`);
    }
  }
  return (loaded = { reason: `cannot load libc (${reasons.join("; ")})` });
}

/** libc for dials from the listening port, unless turned off (EDGEMESH_REUSEPORT_DIAL=off) */
function dialLibc(): { libc?: Libc; reason: string } {
  return process.env.EDGEMESH_REUSEPORT_DIAL === "off" ? { reason: "EDGEMESH_REUSEPORT_DIAL=off" } : load();
}

/** whether dials can leave from the listening port; `reason` says why not */
export function reusePortDialSupport(): { available: boolean; reason: string } {
  const l = dialLibc();
  return { available: !!l.libc, reason: l.reason };
}

export class SocketError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly errno: number,
  ) {
    super(message);
    this.name = "SocketError";
  }
}

function errno(libc: Libc): number {
  const p = libc.__errno_location();
  return p ? read.i32(p as Pointer, 0) : 0;
}

function fail(libc: Libc, fd: number, what: string, n: number): never {
  if (fd >= 0) libc.close(fd);
  throw new SocketError(`${what}: ${errnoName(n)}`, errnoName(n), n);
}

export interface BoundConnectOptions {
  host: string;
  port: number;
  /** our listening port, which the socket is bound to */
  localPort: number;
  /** local address to bind; default the wildcard of the family */
  localHost?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /**
   * hole punching: learn of a refusal within a fraction of a millisecond, so
   * the SYN is sent again before the peer's SYN reaches our host (the
   * listener would answer it with an ISN the NAT has not seen: Linux
   * conntrack then drops the connection's inbound data)
   */
  eager?: boolean;
}

const EAGER_MS = 20;

const ONE = new Int32Array([1]);

/**
 * Connects from `localPort` and resolves with the connected descriptor (the
 * caller owns it). Rejects with a SocketError (code EADDRINUSE,
 * EADDRNOTAVAIL, ECONNREFUSED, ETIMEDOUT, ...) or the signal's reason; the
 * descriptor is closed on every failure.
 */
export async function connectFromPort(o: BoundConnectOptions): Promise<number> {
  const libc = dialLibc().libc;
  if (!libc) throw new SocketError(`dial from the listening port unavailable: ${dialLibc().reason}`, "ENOTSUP", 0);
  o.signal?.throwIfAborted();
  const v6 = o.host.includes(":");
  const family = v6 ? LINUX.AF_INET6 : LINUX.AF_INET;
  const remote = v6 ? sockaddrIn6(o.host, o.port) : sockaddrIn(o.host, o.port);
  const local = v6 ? sockaddrIn6(o.localHost ?? "::", o.localPort) : sockaddrIn(o.localHost ?? "0.0.0.0", o.localPort);
  const fd = libc.socket(family, LINUX.SOCK_STREAM | LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC, 0);
  if (fd < 0) fail(libc, -1, "socket", errno(libc));
  if (libc.setsockopt(fd, LINUX.SOL_SOCKET, LINUX.SO_REUSEADDR, ONE, 4) !== 0) fail(libc, fd, "SO_REUSEADDR", errno(libc));
  if (libc.setsockopt(fd, LINUX.SOL_SOCKET, LINUX.SO_REUSEPORT, ONE, 4) !== 0) fail(libc, fd, "SO_REUSEPORT", errno(libc));
  if (libc.bind(fd, local, local.byteLength) !== 0) fail(libc, fd, `bind port ${o.localPort}`, errno(libc));
  if (libc.connect(fd, remote, remote.byteLength) !== 0) {
    const n = errno(libc);
    if (n !== LINUX.EINPROGRESS && n !== LINUX.EINTR) fail(libc, fd, `connect ${o.host}:${o.port}`, n);
  }
  // wait for the connect to finish without blocking the event loop: poll
  // with a zero timeout, sleeping 1, 2, 4 ... 16 ms between looks; an eager
  // dial looks on every turn of the event loop for its first 20 ms instead
  const start = performance.now();
  const deadline = start + (o.timeoutMs ?? 10_000);
  const eagerUntil = o.eager ? start + EAGER_MS : 0;
  const pfd = new Uint8Array(8);
  const pv = new DataView(pfd.buffer);
  let nap = 1;
  for (;;) {
    pv.setInt32(0, fd, true);
    pv.setInt16(4, LINUX.POLLOUT, true);
    pv.setInt16(6, 0, true);
    const r = libc.poll(pfd, 1, 0);
    if (r < 0 && errno(libc) !== LINUX.EINTR) fail(libc, fd, "poll", errno(libc));
    if (r > 0) break;
    if (o.signal?.aborted) {
      libc.close(fd);
      throw o.signal.reason ?? new SocketError("aborted", "ABORT_ERR", 0);
    }
    if (performance.now() >= deadline) fail(libc, fd, `connect ${o.host}:${o.port}`, LINUX.ETIMEDOUT);
    if (performance.now() < eagerUntil) {
      await new Promise<void>((r) => setImmediate(r));
      continue;
    }
    await Bun.sleep(nap);
    nap = Math.min(nap * 2, 16);
  }
  const err = new Int32Array(1);
  const len = new Uint32Array([4]);
  if (libc.getsockopt(fd, LINUX.SOL_SOCKET, LINUX.SO_ERROR, err, len) !== 0) fail(libc, fd, "SO_ERROR", errno(libc));
  if (err[0] !== 0) fail(libc, fd, `connect ${o.host}:${o.port}`, err[0]!);
  return fd;
}

/**
 * a datagram socket's kernel buffers (each way): a burst waits there while its
 * thread writes to the TUN or forwards; the ~208 KiB default overflowed at
 * 400 Mbit/s of pod UDP (UdpRcvbufErrors, 3.7% lost)
 */
export const UDP_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * a bound, non-blocking IPv4 UDP socket on `port` (all addresses), for a
 * reader thread that polls it through bun:ffi (Bun's own UDP sockets live on
 * the main thread's event loop); throws a SocketError (e.g. the port is taken)
 */
export function openUdpSocket(port: number, bufferBytes = UDP_BUFFER_BYTES): number {
  const libc = load().libc;
  if (!libc) throw new SocketError(`cannot open a UDP socket: ${load().reason}`, "ENOTSUP", 0);
  const fd = libc.socket(LINUX.AF_INET, LINUX.SOCK_DGRAM | LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC, 0);
  if (fd < 0) fail(libc, -1, "cannot open a UDP socket", errno(libc));
  // as root past net.core.[rw]mem_max (FORCE); otherwise the kernel caps it there
  const size = new Int32Array([bufferBytes]);
  for (const [force, plain] of [[LINUX.SO_RCVBUFFORCE, LINUX.SO_RCVBUF], [LINUX.SO_SNDBUFFORCE, LINUX.SO_SNDBUF]] as const) {
    if (libc.setsockopt(fd, LINUX.SOL_SOCKET, force, size, 4) !== 0) libc.setsockopt(fd, LINUX.SOL_SOCKET, plain, size, 4);
  }
  const addr = sockaddrIn("0.0.0.0", port);
  if (libc.bind(fd, addr, addr.byteLength) !== 0) fail(libc, fd, `cannot bind UDP port ${port}`, errno(libc));
  return fd;
}

/** closes a descriptor we created and never handed over */
export function closeFd(fd: number): void {
  load().libc?.close(fd);
}
