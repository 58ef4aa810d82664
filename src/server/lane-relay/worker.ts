// The lane relay's thread (a Worker, started by ./index.ts): forwards pod
// network lane datagrams between agents whose connection runs through this
// server. It waits in poll() on its UDP socket; an agent registers the
// address it sends from with its relay id and token (learned over its
// verified tunnel connection), and a datagram in an envelope is forwarded,
// without the envelope, to the registered address of the relay id it names.
// Only registered addresses may have datagrams forwarded: the relay is no
// reflector for anyone else. Payloads stay sealed end to end. Each
// registration taken is answered with the address it came from (under the
// token), which is how an agent learns its public lane address.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { checkRegistration, ENVELOPE, LANE_HEADER, LANE_TAG, observedDatagram, REGISTER_BYTES, RelayType } from "../../agent/podnet/lane-codec.ts";
import type { RelayWorkerEvent, RelayWorkerMessage } from "./protocol.ts";

const c = dlopen("libc.so.6", {
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
  recvfrom: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i64 },
}).symbols;
const port = globalThis as unknown as { onmessage: (e: MessageEvent<RelayWorkerMessage>) => void; postMessage(m: RelayWorkerEvent): void };
const MSG_DONTWAIT = 0x40;
/** registrations (one a second per agent) are answered at most this often per grant */
const ANSWER_EVERY_MS = 500;
/** the thread reads the main thread's messages (grants) at least this often */
const YIELD_MS = 100;

interface Entry {
  token: Uint8Array;
  addr?: Uint8Array;
  key?: number;
  /** the highest registration counter taken: an older one is a copy */
  counter: number;
  /** when a registration was last answered (performance.now) */
  answeredAt: number;
}

let fd = -1;
let stopped = false;
const byId = new Map<number, Entry>();
/** registered source address (IPv4 × 65536 + port) → relay id */
const bySource = new Map<number, number>();
const counters = { forwarded: 0, registrations: 0 };
const drops: Record<string, number> = {};
let dirty = false;
let lastStats = 0;
const buf = new Uint8Array(65_536);
const from = new Uint8Array(16);
const fromLen = new Uint32Array(1);

port.onmessage = (e) => {
  const m = e.data;
  if (m.op === "start") {
    fd = m.fd;
    run();
  } else if (m.op === "allow") {
    forgetId(m.relayId);
    byId.set(m.relayId, { token: m.token, counter: 0, answeredAt: -Infinity });
    port.postMessage({ ev: "allowed", relayId: m.relayId });
  } else if (m.op === "revoke") forgetId(m.relayId);
  else if (m.op === "stop") stopped = true;
};

function drop(reason: string): void {
  drops[reason] = (drops[reason] ?? 0) + 1;
  dirty = true;
}

function forgetId(relayId: number): void {
  const old = byId.get(relayId);
  if (old?.key !== undefined && bySource.get(old.key) === relayId) bySource.delete(old.key);
  byId.delete(relayId);
  dirty = true;
}

/** the sender's address as a number: no string per datagram on this path */
function sourceKey(): number {
  return (((from[4]! << 24) | (from[5]! << 16) | (from[6]! << 8) | from[7]!) >>> 0) * 65536 + ((from[2]! << 8) | from[3]!);
}

function receive(): void {
  for (let i = 0; i < 256; i++) {
    fromLen[0] = 16;
    const n = Number(c.recvfrom(fd, ptr(buf), buf.byteLength, MSG_DONTWAIT, ptr(from), ptr(fromLen)));
    if (n <= 0) return;
    // the envelope, read in place: [type][0 0 0][relay id u32]
    const type = buf[0];
    if (n < ENVELOPE || buf[1] !== 0 || buf[2] !== 0 || buf[3] !== 0 || (type === RelayType.register ? n !== REGISTER_BYTES : type !== RelayType.forward || n < ENVELOPE + LANE_HEADER + LANE_TAG)) {
      drop("malformed");
      continue;
    }
    const relayId = ((buf[4]! << 24) | (buf[5]! << 16) | (buf[6]! << 8) | buf[7]!) >>> 0;
    const key = sourceKey();
    if (type === RelayType.register) {
      const entry = byId.get(relayId);
      const counter = entry && checkRegistration(entry.token, buf.subarray(0, n));
      if (!entry || counter === undefined || counter <= entry.counter) {
        drop("registration");
        continue;
      }
      entry.counter = counter;
      // what we saw it come from: the agent's public lane address, for peers it reaches directly
      // (at most two answers a second per grant: an agent cannot aim a stream of them elsewhere)
      const now = performance.now();
      if (now - entry.answeredAt >= ANSWER_EVERY_MS) {
        entry.answeredAt = now;
        const seen = observedDatagram(entry.token, buf.subarray(0, n), from);
        if (Number(c.sendto(fd, ptr(seen), seen.byteLength, 0, ptr(from), 16)) !== seen.byteLength) drop("send");
      }
      if (entry.key !== key) {
        if (entry.key !== undefined && bySource.get(entry.key) === relayId) bySource.delete(entry.key);
        entry.key = key;
        entry.addr = from.slice();
        bySource.set(key, relayId);
        counters.registrations++;
        dirty = true;
      }
      continue;
    }
    if (!bySource.has(key)) {
      drop("unregistered");
      continue;
    }
    const to = byId.get(relayId)?.addr;
    if (!to) {
      drop("unknown");
      continue;
    }
    if (Number(c.sendto(fd, ptr(buf, ENVELOPE), n - ENVELOPE, 0, ptr(to), 16)) !== n - ENVELOPE) drop("send");
    else counters.forwarded++;
    dirty = true;
  }
}

function run(): void {
  const pfd = new Uint8Array(8);
  const dv = new DataView(pfd.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, 1, true);
  const until = performance.now() + YIELD_MS;
  while (!stopped) {
    dv.setInt16(6, 0, true);
    if (c.poll(ptr(pfd), 1, YIELD_MS) > 0) receive();
    const now = performance.now();
    if (dirty && now - lastStats >= 250) {
      lastStats = now;
      dirty = false;
      port.postMessage({ ev: "stats", registered: bySource.size, ...counters, drops: { ...drops } });
    }
    if (now > until) break;
  }
  if (stopped) return port.postMessage({ ev: "stopped" });
  setTimeout(run, 0);
}
