// The pod network's reader thread (a Worker, started by tun.ts). It waits in
// poll() on the TUN, the lane's UDP socket and a wake-up pipe, so the main
// thread's event loop never blocks on them:
// - units read from the TUN go, when their peer has a lane up and they are
//   single packets (lane-select.ts), out as sealed datagrams from here at
//   once; the rest are copied, each behind its u32 length, into a ring of
//   slots in shared memory whose numbers are posted to the main thread,
//   which sends them on the tunnel streams. At most SLOTS batches are in
//   flight: when the main thread falls behind, the TUN is not read, the
//   kernel's queue for the device fills and drops (and counts): memory stays
//   bounded.
// - datagrams are authenticated, checked for replay and, as from the stream,
//   for their addresses (admission.ts), then written to the TUN; what the
//   host answered meanwhile is read at once.
// Keeping the lane's whole path on this thread is the point: each hand-over
// to the main thread's event loop costs tens to hundreds of microseconds on
// an idle machine (BENCHMARKS.md).
import { dlopen, FFIType, ptr } from "bun:ffi";
import { loadOpenSslChaCha } from "../../tunnel/crypto/openssl-chacha.ts";
import { RouteTable } from "./route-table.ts";
import { inboundProblem } from "./admission.ts";
import { LaneSelector } from "./lane-select.ts";
import { checkObserved, LaneType, observedRelayId, openDatagram, readHead, registerDatagram, RelayType, ReplayWindow, Sealer, type Aead, type LaneTypeValue } from "./lane-codec.ts";
import { VNET_HDR_LEN } from "./vnet.ts";
import { LEN_BYTES, READ_LEN, readUnits } from "./unit-frames.ts";
import { DropLogBudget } from "./drop-log.ts";
import type { WorkerEvent, WorkerMessage, WorkerStart, LaneInstall, LaneStats, RelayRegister } from "./tun-protocol.ts";

const c = dlopen("libc.so.6", {
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
}).symbols;

const port = globalThis as unknown as { onmessage: (e: MessageEvent<WorkerMessage>) => void; postMessage(m: WorkerEvent | number): void };
const POLLIN = 1;
const MSG_DONTWAIT = 0x40;
/** the thread goes back to its event loop (for the main thread's messages) at least this often */
const YIELD_MS = 1000;
const PROBE_UP_MS = 500;
const PROBE_FAST_MS = 500;
const PROBE_SLOW_MS = 5000;
const FAST_PROBES = 20;
/**
 * a lane that heard nothing (probe answers come twice a second) for this long
 * is down: packets take the stream again. Single packets sent into a lane
 * that died are lost until then, so it is short; three answers missed in a row
 */
const SILENT_MS = 1500;
const EMPTY = new Uint8Array(0);

interface Rx {
  key: Uint8Array;
  window: ReplayWindow;
  node: string;
}
/** receive ids kept per peer: both sides may offer at once, and each side then sends under the other's latest id */
const RX_PER_PEER = 2;

interface Lane {
  node: string;
  addr: Uint8Array;
  txId: number;
  txKey: Uint8Array;
  /** through a server: the peer's relay id there (datagrams go in an envelope to `addr`, the server) */
  relayId?: number;
  counter: number;
  /** ids datagrams from this peer carry, newest first */
  rxIds: number[];
  up: boolean;
  lastHeard: number;
  lastProbe: number;
  probes: number;
  stats: LaneStats;
}

/** the start message, with views of its shared memory */
type Started = Omit<WorkerStart, "op" | "ring" | "ctlBuf"> & { ctl: Int32Array; bytes: Uint8Array };

let s: Started | undefined;
let table: RouteTable | undefined;
let aead: Aead | undefined;
let sealer: Sealer | undefined;
/** decrypted payloads land here (written to the TUN at once); and the nonce's scratch */
const plain = new Uint8Array(65_536);
const openNonce = new Uint8Array(12);
const lanes = new Map<string, Lane>();
const rxById = new Map<number, Rx>();
const selector = new LaneSelector();
const drops: Record<string, number> = {};
let seq = 0;
let lastTimers = 0;
let lastStats = 0;
let statsDirty = false;
const rbuf = new Uint8Array(65_536);
const pipeBuf = new Uint8Array(64);

port.onmessage = (e) => {
  const m = e.data;
  // after stop the main thread closes our descriptors: nothing more may use them
  if (s && Atomics.load(s.ctl, 0) !== 0) return;
  if (m.op === "start") {
    s = { ...m, ctl: new Int32Array(m.ctlBuf), bytes: new Uint8Array(m.ring) };
    if (m.udpFd >= 0) {
      // the main thread loaded it before opening the socket; should it fail here, the TUN is still read (no lanes)
      try {
        sealer = new Sealer((aead = loadOpenSslChaCha()));
      } catch (err) {
        s.udpFd = -1;
        drop("lane-off", (err as Error).message);
      }
    }
    run();
  } else if (m.op === "nodes") table = new RouteTable(m.nodes, s?.self ?? "");
  // without a cipher (it failed to load here) there are no lanes
  else if (m.op === "lane" && sealer) install(m);
  else if (m.op === "register" && sealer) register(m);
  else if (m.op === "unlane") remove(m.node);
};

/** drops told to the main thread, for its log */
const told = new DropLogBudget();

function drop(reason: string, detail = ""): void {
  drops[reason] = (drops[reason] ?? 0) + 1;
  statsDirty = true;
  if (told.take(reason)) port.postMessage({ ev: "drop", reason, detail });
}

function install(m: LaneInstall): void {
  const old = lanes.get(m.node);
  const rxIds = [m.rxId, ...(old?.rxIds ?? []).filter((id) => id !== m.rxId)];
  for (const id of rxIds.splice(RX_PER_PEER)) rxById.delete(id);
  rxById.set(m.rxId, { key: m.rxKey, window: new ReplayWindow(), node: m.node });
  lanes.set(m.node, {
    node: m.node,
    addr: m.addr,
    txId: m.txId,
    txKey: m.txKey,
    ...(m.relayId !== undefined ? { relayId: m.relayId } : {}),
    counter: 0,
    rxIds,
    up: false,
    lastHeard: 0,
    lastProbe: 0,
    probes: 0,
    stats: old?.stats ?? { up: false, packetsOut: 0, bytesOut: 0, packetsIn: 0, bytesIn: 0 },
  });
  lanes.get(m.node)!.stats.up = false;
  statsDirty = true;
}

/** our registrations at servers' lane relays: sent now and every second (which keeps our NAT's mapping too) */
const registrations = new Map<string, RelayRegister>();
/** registration counters: from the clock (they grow across restarts), never twice the same */
let lastCounter = 0;

function register(m: RelayRegister): void {
  registrations.set(m.server, m);
  sendRegistration(m);
}

function sendRegistration(m: RelayRegister): void {
  lastCounter = Math.max(lastCounter + 1, Date.now() * 1000);
  const d = registerDatagram(m.relayId, m.token, lastCounter);
  if (Number(c.sendto(s!.udpFd, ptr(d), d.byteLength, 0, ptr(m.addr), 16)) !== d.byteLength) drop("lane-send", "registration at a server");
}

/** per server ("ip:port" of its lane relay): the newest answer's counter (an older one is late or a copy), what it said and when we told it */
const observedBy = new Map<string, { counter: number; seen: string; toldAt: number }>();
/** answers are told to the main thread when they change, and this often anyway (there, one older than 30 s no longer counts) */
const OBSERVED_REFRESH_MS = 10_000;

/** a server's answer to a registration: our public lane address as it saw it */
function observed(d: Uint8Array, now: number): void {
  const relayId = observedRelayId(d);
  const reg = relayId === undefined ? undefined : [...registrations.values()].find((r) => r.relayId === relayId);
  const o = reg && checkObserved(reg.token, d);
  if (!reg || !o) return drop("lane-malformed", "an answer from a lane relay that does not verify");
  const server = reg.server;
  const seen = `${o.ip}:${o.port}`;
  const last = observedBy.get(server);
  if (last && o.counter <= last.counter) return;
  const tell = !last || last.seen !== seen || now - last.toldAt >= OBSERVED_REFRESH_MS;
  observedBy.set(server, { counter: o.counter, seen, toldAt: tell ? now : last.toldAt });
  if (tell) port.postMessage({ ev: "observed", server, ip: o.ip, port: o.port });
}

function remove(node: string): void {
  const old = lanes.get(node);
  if (!old) return;
  lanes.delete(node);
  for (const id of old.rxIds) rxById.delete(id);
  statsDirty = true;
}

function send(lane: Lane, type: LaneTypeValue, payload: Uint8Array): boolean {
  const d = sealer!.seal(lane.txKey, lane.txId, lane.counter++, type, payload, lane.relayId);
  if (Number(c.sendto(s!.udpFd, ptr(d), d.byteLength, 0, ptr(lane.addr), 16)) !== d.byteLength) {
    drop("lane-send", `to ${lane.node}`);
    return false;
  }
  return true;
}

/** a unit read from the TUN: true when it went on a lane (or was dropped trying) */
function toLane(unit: Uint8Array, now: number): boolean {
  const ip = VNET_HDR_LEN;
  // IPv4 only (anything else goes to the main thread, which drops and counts it)
  if (!table || unit.byteLength < ip + 20 || unit[ip]! >> 4 !== 4) return false;
  const dst = ((unit[ip + 16]! << 24) | (unit[ip + 17]! << 16) | (unit[ip + 18]! << 8) | unit[ip + 19]!) >>> 0;
  const node = table.nodeFor(dst);
  const lane = node === undefined ? undefined : lanes.get(node);
  if (!lane?.up || !selector.mayTakeLane(unit, now)) return false;
  if (send(lane, LaneType.data, unit)) {
    lane.stats.packetsOut++;
    lane.stats.bytesOut += unit.byteLength - VNET_HDR_LEN;
    statsDirty = true;
  }
  return true;
}

/** readUnits' pieces, made once (this path runs per batch): a read() into the ring, the oversized count, the lane's pick */
const readTun = (at: number, len: number) => Number(c.read(s!.fd, ptr(s!.bytes, at), len));
const countOversized = () => void Atomics.add(s!.ctl, 2, 1);
let readAt = 0;
const divertToLane = (unit: Uint8Array) => toLane(unit, readAt);

function fromTun(now: number): void {
  const st = s!;
  readAt = now;
  const opts = { oversized: countOversized, divert: lanes.size > 0 ? divertToLane : undefined };
  for (let round = 0; round < 4 && Atomics.load(st.ctl, 1) < st.slots; round++) {
    const slot = seq % st.slots;
    const base = slot * st.slotBytes;
    const filled = readUnits(readTun, st.bytes, base, base + st.slotBytes, opts);
    const off = filled.off - base;
    if (off > 0) {
      st.ctl[3 + slot] = off;
      seq++;
      Atomics.add(st.ctl, 1, 1);
      port.postMessage(slot);
    }
    // a slot filled up: the next takes the rest
    if (filled.reads === 0 || st.slotBytes - off >= READ_LEN + LEN_BYTES) return;
  }
}

function fromUdp(now: number): void {
  const st = s!;
  let wrote = false;
  for (let i = 0; i < 256; i++) {
    const n = Number(c.recv(st.udpFd, ptr(rbuf), rbuf.byteLength, MSG_DONTWAIT));
    if (n <= 0) break;
    const d = rbuf.subarray(0, n);
    if (d[0] === RelayType.observed) {
      observed(d, now);
      continue;
    }
    const h = readHead(d);
    if (!h) {
      drop("lane-malformed");
      continue;
    }
    const rx = rxById.get(h.receiverId);
    if (!rx) {
      drop("lane-unknown", `lane id ${h.receiverId}`);
      continue;
    }
    const payload = openDatagram(aead!, rx.key, h, d, plain, openNonce);
    if (!payload) {
      drop("lane-auth", `lane of ${rx.node}`);
      continue;
    }
    if (!rx.window.accept(h.counter)) {
      drop("lane-replay", `lane of ${rx.node}, counter ${h.counter}`);
      continue;
    }
    const lane = lanes.get(rx.node);
    if (!lane) continue;
    if (h.type === LaneType.probe) {
      send(lane, LaneType.probeReply, EMPTY);
      continue;
    }
    if (h.type === LaneType.probeReply) {
      // only answers to our probes prove that what we send arrives (the peer's own datagrams prove the other way)
      lane.lastHeard = now;
      if (!lane.up) {
        lane.up = lane.stats.up = true;
        statsDirty = true;
        port.postMessage({ ev: "lane", node: lane.node, up: true });
      }
      continue;
    }
    const refused = inboundProblem(table, lane.node, payload, st.mtu);
    if (refused) {
      drop(refused.reason, refused.detail);
      continue;
    }
    if (Number(c.write(st.fd, ptr(payload), payload.byteLength)) !== payload.byteLength) {
      drop("tun-write", `from ${lane.node}`);
      continue;
    }
    lane.stats.packetsIn++;
    lane.stats.bytesIn += payload.byteLength - VNET_HDR_LEN;
    statsDirty = true;
    wrote = true;
  }
  // answers the host made while we wrote (a pod's reply) go out now
  if (wrote) fromTun(now);
}

let lastRegistration = 0;

function timers(now: number): void {
  if (now - lastRegistration >= 1000) {
    lastRegistration = now;
    for (const reg of registrations.values()) sendRegistration(reg);
  }
  for (const lane of lanes.values()) {
    const every = lane.up ? PROBE_UP_MS : lane.probes < FAST_PROBES ? PROBE_FAST_MS : PROBE_SLOW_MS;
    if (now - lane.lastProbe >= every) {
      lane.lastProbe = now;
      lane.probes++;
      send(lane, LaneType.probe, EMPTY);
    }
    if (lane.up && now - lane.lastHeard > SILENT_MS) {
      lane.up = lane.stats.up = false;
      lane.probes = 0;
      statsDirty = true;
      port.postMessage({ ev: "lane", node: lane.node, up: false });
    }
  }
  if (statsDirty && now - lastStats >= 250) {
    lastStats = now;
    statsDirty = false;
    port.postMessage({ ev: "stats", lanes: Object.fromEntries([...lanes].map(([n, l]) => [n, { ...l.stats }])), drops: { ...drops } });
  }
}

function run(): void {
  const st = s!;
  const pfd = new Uint8Array(24);
  const dv = new DataView(pfd.buffer);
  const fds = [st.fd, st.wakeFd, st.udpFd];
  const n = st.udpFd >= 0 ? 3 : 2;
  for (let i = 0; i < n; i++) dv.setInt32(i * 8, fds[i]!, true);
  const until = performance.now() + YIELD_MS;
  while (Atomics.load(st.ctl, 0) === 0) {
    const ringFull = Atomics.load(st.ctl, 1) >= st.slots;
    dv.setInt16(4, ringFull ? 0 : POLLIN, true);
    for (let i = 1; i < n; i++) dv.setInt16(i * 8 + 4, POLLIN, true);
    for (let i = 0; i < n; i++) dv.setInt16(i * 8 + 6, 0, true);
    const ready = c.poll(ptr(pfd), n, ringFull ? 5 : 250);
    const now = performance.now();
    if (ready > 0) {
      if (n === 3 && dv.getInt16(22, true)) fromUdp(now);
      if (dv.getInt16(6, true)) fromTun(now);
      if (dv.getInt16(14, true)) {
        // the main thread posted a message: read it on the event loop, then come back
        c.read(st.wakeFd, ptr(pipeBuf), pipeBuf.byteLength);
        break;
      }
    }
    if (aead && now - lastTimers >= 250) {
      lastTimers = now;
      timers(now);
    }
    if (now > until) break;
  }
  if (Atomics.load(st.ctl, 0) !== 0) return port.postMessage(-1);
  setTimeout(run, 0);
}
