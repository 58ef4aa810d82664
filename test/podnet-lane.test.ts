// The pod network's datagram lane: its datagram format, replay window, the
// offer exchanged over the tunnel, and which packets take it.
import { expect, test } from "bun:test";
import { loadOpenSslChaCha } from "../src/tunnel/crypto/openssl-chacha.ts";
import { checkObserved, decodeGrant, directLaneTarget, observedDatagram, observedRelayId, decodeOffer, encodeGrant, encodeOffer, ENVELOPE, LANE_HEADER, LaneType, newOffer, openDatagram, readHead, registerDatagram, checkRegistration, REGISTER_BYTES, RelayType, REPLAY_WINDOW, ReplayWindow, Sealer, type LaneTypeValue } from "../src/agent/podnet/lane-codec.ts";
import { LaneSelector, MAX_LANE_UNIT, STICKY_MS } from "../src/agent/podnet/lane-select.ts";
import { VNET_HDR_LEN } from "../src/agent/podnet/vnet.ts";

const aead = loadOpenSslChaCha();
const key = crypto.getRandomValues(new Uint8Array(32));
const payload = crypto.getRandomValues(new Uint8Array(94));
/** a datagram of its own (a Sealer's result is valid until its next seal) */
const seal = (k: Uint8Array, receiverId: number, counter: number, type: LaneTypeValue, p: Uint8Array) => new Sealer(aead).seal(k, receiverId, counter, type, p).slice();

test("a sealed datagram opens under its key and carries its header in the clear", () => {
  const d = seal(key, 0xdeadbeef, 2 ** 40 + 5, LaneType.data, payload);
  expect(d.byteLength).toBe(LANE_HEADER + payload.byteLength + 16);
  const h = readHead(d)!;
  expect(h).toEqual({ type: LaneType.data, receiverId: 0xdeadbeef, counter: 2 ** 40 + 5 });
  expect(openDatagram(aead, key, h, d)).toEqual(payload);
  // the payload is not in the clear
  expect(Buffer.from(d).includes(Buffer.from(payload.subarray(0, 16)))).toBe(false);
});

test("a datagram whose header, payload or tag was changed, or under another key, does not open", () => {
  const d = seal(key, 7, 1, LaneType.data, payload);
  const h = readHead(d)!;
  for (const at of [0, 4, 8, 15, LANE_HEADER, LANE_HEADER + 50, d.byteLength - 1]) {
    const t = d.slice();
    t[at]! ^= 1;
    const th = readHead(t);
    // a changed type or id may already fail the header; otherwise authentication must
    if (th) expect(openDatagram(aead, key, th, t)).toBeUndefined();
  }
  expect(openDatagram(aead, crypto.getRandomValues(new Uint8Array(32)), h, d)).toBeUndefined();
  // the counter is bound: the same bytes claimed under another counter fail
  expect(openDatagram(aead, key, { ...h, counter: 2 }, d)).toBeUndefined();
});

test("headers that cannot be ours are refused before any decryption", () => {
  expect(readHead(new Uint8Array(LANE_HEADER + 15))).toBeUndefined();
  const d = seal(key, 7, 1, LaneType.probe, new Uint8Array(0));
  expect(readHead(d)?.type).toBe(LaneType.probe);
  const bad = d.slice();
  bad[0] = 9;
  expect(readHead(bad)).toBeUndefined();
  const reserved = d.slice();
  reserved[2] = 1;
  expect(readHead(reserved)).toBeUndefined();
});

test("the Sealer reuses one buffer: each result is valid until the next seal", () => {
  const s = new Sealer(aead);
  const a = s.seal(key, 1, 1, LaneType.data, payload).slice();
  const b = s.seal(key, 1, 2, LaneType.data, payload);
  expect(openDatagram(aead, key, readHead(a)!, a)).toEqual(payload);
  expect(openDatagram(aead, key, readHead(b)!, b)).toEqual(payload);
  // decrypting into a caller's buffer
  const dst = new Uint8Array(2048);
  const out = openDatagram(aead, key, readHead(b)!, b, dst, new Uint8Array(12))!;
  expect(out.buffer).toBe(dst.buffer);
  expect(out).toEqual(payload);
});

test("the replay window takes each counter once, late ones within the window, none older", () => {
  const w = new ReplayWindow();
  expect(w.accept(0)).toBe(true);
  expect(w.accept(0)).toBe(false);
  expect(w.accept(5)).toBe(true);
  expect(w.accept(3)).toBe(true); // reordered, inside the window
  expect(w.accept(3)).toBe(false);
  expect(w.accept(5)).toBe(false);
  expect(w.accept(5 + REPLAY_WINDOW)).toBe(true);
  expect(w.accept(5)).toBe(false); // exactly a window behind: out
  expect(w.accept(6)).toBe(true); // the oldest inside, never seen (slots were cleared as the window moved)
  expect(w.accept(6)).toBe(false);
  // a long jump clears every slot: old counters in the new window's range are fresh
  expect(w.accept(10 * REPLAY_WINDOW)).toBe(true);
  expect(w.accept(10 * REPLAY_WINDOW - 1)).toBe(true);
  expect(w.accept(10 * REPLAY_WINDOW - 1)).toBe(false);
});

test("offers round-trip; wrong sizes and versions are named", () => {
  const o = newOffer(20007);
  const d = decodeOffer(encodeOffer(o));
  expect(d).toEqual(o);
  expect(decodeOffer(new Uint8Array(10))).toMatch(/offer of 10 bytes/);
  const v = encodeOffer(o);
  v[0] = 1;
  expect(decodeOffer(v)).toMatch(/version 1/);
  expect(newOffer(1).key).not.toEqual(newOffer(1).key);
  // with the public address a server saw
  const p = newOffer(20007, 0, { ip: "192.0.2.12", port: 41234 });
  expect(decodeOffer(encodeOffer(p))).toEqual(p);
});

test("a peer reached through its NAT is sent to at its public lane address; one on the LAN, or without one, at its lane port", () => {
  const behindNat = newOffer(20007, 0, { ip: "192.0.2.12", port: 41234 });
  expect(directLaneTarget("192.0.2.12", behindNat)).toEqual({ ip: "192.0.2.12", port: 41234 });
  // the same peer seen over the LAN (its far end is not the public address)
  expect(directLaneTarget("10.10.2.12", behindNat)).toEqual({ ip: "10.10.2.12", port: 20007 });
  expect(directLaneTarget("192.0.2.12", newOffer(20007))).toEqual({ ip: "192.0.2.12", port: 20007 });
});

test("a server's answer to a registration carries the address it came from, under the grant's token; a changed byte or another token is refused", () => {
  const token = crypto.getRandomValues(new Uint8Array(16));
  const reg = registerDatagram(77, token, 1_000_001);
  // struct sockaddr_in: family, port 41234, 192.0.2.12
  const from = new Uint8Array(16);
  from.set([2, 0, 41234 >> 8, 41234 & 255, 192, 0, 2, 12]);
  const answer = observedDatagram(token, reg, from);
  expect(observedRelayId(answer)).toBe(77);
  expect(checkObserved(token, answer)).toEqual({ relayId: 77, counter: 1_000_001, ip: "192.0.2.12", port: 41234 });
  expect(checkObserved(crypto.getRandomValues(new Uint8Array(16)), answer)).toBeUndefined();
  for (const at of [5, 12, 17, 21, 30]) {
    const bad = answer.slice();
    bad[at]! ^= 1;
    expect(checkObserved(token, bad)).toBeUndefined();
  }
  expect(observedRelayId(reg)).toBeUndefined();
});

/** [vnet header][IPv4 packet] of `len` bytes in all, protocol `proto`, GSO when `gso` */
function unit(len: number, proto: number, o: { gso?: boolean; sport?: number } = {}): Uint8Array {
  const u = new Uint8Array(len);
  if (o.gso) u[1] = 1;
  const ip = VNET_HDR_LEN;
  u[ip] = 0x45;
  u[ip + 9] = proto;
  u.set([10, 244, 1, 2], ip + 12);
  u.set([10, 244, 3, 2], ip + 16);
  new DataView(u.buffer).setUint16(ip + 20, o.sport ?? 40000);
  new DataView(u.buffer).setUint16(ip + 22, 80);
  return u;
}

test("single packets take the lane; GSO packets and anything larger than a datagram take the stream", () => {
  const s = new LaneSelector();
  expect(s.mayTakeLane(unit(94, 1), 0)).toBe(true); // ping
  expect(s.mayTakeLane(unit(1410, 17), 0)).toBe(true); // a full UDP packet at MTU 1400
  expect(s.mayTakeLane(unit(MAX_LANE_UNIT + 1, 17), 0)).toBe(false);
  expect(s.mayTakeLane(unit(60_000, 6, { gso: true }), 0)).toBe(false);
  expect(s.mayTakeLane(unit(94, 1).subarray(0, VNET_HDR_LEN + 19), 0)).toBe(false); // shorter than an IP header
});

test("a TCP flow that sent a GSO packet keeps to the stream for a while; other flows do not", () => {
  const s = new LaneSelector();
  expect(s.mayTakeLane(unit(80, 6), 1000)).toBe(true);
  expect(s.mayTakeLane(unit(30_000, 6, { gso: true }), 1000)).toBe(false);
  // its next small segment would overtake the GSO packet on the lane: stream
  expect(s.mayTakeLane(unit(80, 6), 1000 + STICKY_MS - 1)).toBe(false);
  // another flow (another port) is not held
  expect(s.mayTakeLane(unit(80, 6, { sport: 40001 }), 1001)).toBe(true);
  // after the quiet time, back on the lane
  expect(s.mayTakeLane(unit(80, 6), 1000 + STICKY_MS + 1)).toBe(true);
});

test("through a server, a datagram goes in an envelope naming the peer's relay id; the inner datagram is the plain one", () => {
  const s = new Sealer(aead);
  const plain = s.seal(key, 7, 3, LaneType.data, payload).slice();
  const wrapped = s.seal(key, 7, 3, LaneType.data, payload, 0xabcdef01);
  expect(Array.from(wrapped.subarray(0, ENVELOPE))).toEqual([RelayType.forward, 0, 0, 0, 0xab, 0xcd, 0xef, 0x01]);
  expect(wrapped.subarray(ENVELOPE)).toEqual(plain);
});

test("a registration proves the token without carrying it, and names its counter", () => {
  const token = crypto.getRandomValues(new Uint8Array(16));
  const reg = registerDatagram(0x01020304, token, 1_765_000_000_000_123);
  expect(reg.byteLength).toBe(REGISTER_BYTES);
  expect(Array.from(reg.subarray(0, 8))).toEqual([RelayType.register, 0, 0, 0, 1, 2, 3, 4]);
  expect(Buffer.from(reg).includes(Buffer.from(token))).toBe(false);
  expect(checkRegistration(token, reg)).toBe(1_765_000_000_000_123);
  expect(checkRegistration(crypto.getRandomValues(new Uint8Array(16)), reg)).toBeUndefined();
  for (const at of [4, 9, 15, 20]) {
    const t = reg.slice();
    t[at]! ^= 1;
    expect(checkRegistration(token, t)).toBeUndefined();
  }
});

test("grants and offers carry the relay ids", () => {
  const g = { port: 20007, relayId: 42, token: crypto.getRandomValues(new Uint8Array(16)) };
  expect(decodeGrant(encodeGrant(g))).toEqual(g);
  expect(decodeGrant(new Uint8Array(3))).toMatch(/grant of 3 bytes/);
  const o = newOffer(20007, 77);
  expect((decodeOffer(encodeOffer(o)) as { relayId: number }).relayId).toBe(77);
});
