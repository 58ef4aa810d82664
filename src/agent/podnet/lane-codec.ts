// The pod network's datagram lane (docs/podnet.md): single pod packets to a
// peer reached directly go as UDP datagrams, sealed with ChaCha20-Poly1305
// under keys the two agents exchanged over their verified tunnel connection.
// A datagram:
//   [type u8][0 0 0][receiver's lane id u32][counter u64][sealed payload + 16-byte tag]
// The first 16 bytes are the AEAD's associated data; the nonce is 4 zero
// bytes and the counter. A key is fresh for every exchange, so a counter
// never repeats under one key. The receiver refuses counters it has seen or
// that fell behind its window (replays).
import { createHmac } from "node:crypto";

export const LANE_HEADER = 16;
export const LANE_TAG = 16;
export const LaneType = { data: 1, probe: 2, probeReply: 3 } as const;
// Through a tunnel server (a relayed connection), a datagram travels inside
// an envelope the server reads: [5][0 0 0][receiver's relay id u32][datagram];
// the server forwards the datagram alone to the address that relay id
// registered from with [6][0 0 0][relay id u32][counter][MAC] (registerDatagram). The server
// sees ids and sizes, never a payload or a key.
// Each registration the server takes is answered with what it saw:
// [7][0 0 0][relay id u32][the registration's counter u64][IPv4 4][port u16]
// [0 0][MAC over the first 24 bytes, 16] (observedDatagram): the agent's
// public UDP address, which it offers to peers it reaches directly through
// NATs that do not keep the port (STUN's answer, under the grant's token).
export const RelayType = { forward: 5, register: 6, observed: 7 } as const;
export const ENVELOPE = 8;
export const REGISTER_BYTES = 8 + 8 + 16;
export const OBSERVED_BYTES = 8 + 8 + 8 + 16;
export type LaneTypeValue = (typeof LaneType)[keyof typeof LaneType];
/** how far behind the highest counter seen a datagram may still arrive (reordering on the path) */
export const REPLAY_WINDOW = 1024;

export interface Aead {
  /** ciphertext || tag written into `dst` */
  encryptTo(dst: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array): Uint8Array;
  /** throws when the tag does not verify; writes into `dst` when given */
  decrypt(ciphertext: Uint8Array, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array, dst?: Uint8Array): Uint8Array;
}

/** the nonce of `counter`, written into `n` (12 bytes) */
export function laneNonce(counter: number, n: Uint8Array = new Uint8Array(12)): Uint8Array {
  const dv = new DataView(n.buffer, n.byteOffset, 12);
  dv.setUint32(0, 0);
  dv.setUint32(4, Math.floor(counter / 2 ** 32));
  dv.setUint32(8, counter >>> 0);
  return n;
}

/**
 * Builds datagrams in one buffer of its own, without allocating: the lane
 * is about latency, and on an idle machine each allocation and copy costs.
 * The returned view is valid until the next seal.
 */
export class Sealer {
  /** [room for an envelope][header][sealed payload][tag] */
  private readonly all = new Uint8Array(ENVELOPE + LANE_HEADER + 65_536 + LANE_TAG);
  private readonly buf = this.all.subarray(ENVELOPE);
  private readonly nonce = new Uint8Array(12);
  private readonly dv = new DataView(this.all.buffer);

  constructor(private readonly aead: Aead) {}

  /** the datagram; inside an envelope to `relayId` when given (sent to the server) */
  seal(key: Uint8Array, receiverId: number, counter: number, type: LaneTypeValue, payload: Uint8Array, relayId?: number): Uint8Array {
    const b = this.buf;
    b[0] = type;
    b[1] = b[2] = b[3] = 0;
    this.dv.setUint32(ENVELOPE + 4, receiverId >>> 0);
    this.dv.setUint32(ENVELOPE + 8, Math.floor(counter / 2 ** 32));
    this.dv.setUint32(ENVELOPE + 12, counter >>> 0);
    const sealed = this.aead.encryptTo(b.subarray(LANE_HEADER), payload, laneNonce(counter, this.nonce), b.subarray(0, LANE_HEADER), key);
    const len = LANE_HEADER + sealed.byteLength;
    if (relayId === undefined) return b.subarray(0, len);
    this.all[0] = RelayType.forward;
    this.all[1] = this.all[2] = this.all[3] = 0;
    this.dv.setUint32(4, relayId >>> 0);
    return this.all.subarray(0, ENVELOPE + len);
  }
}

/**
 * what an agent sends its server (every second: it also keeps its NAT's
 * mapping open): [6][0 0 0][relay id u32][counter u64][HMAC-SHA256 under the
 * token of the first 16 bytes, 16 of its bytes]. The token never travels in
 * the clear, and the counter (from the clock, so it grows across restarts)
 * must grow: a registration copied off the wire is worth nothing elsewhere.
 */
export function registerDatagram(relayId: number, token: Uint8Array, counter: number): Uint8Array {
  const d = new Uint8Array(REGISTER_BYTES);
  const dv = new DataView(d.buffer);
  d[0] = RelayType.register;
  dv.setUint32(4, relayId >>> 0);
  dv.setUint32(8, Math.floor(counter / 2 ** 32));
  dv.setUint32(12, counter >>> 0);
  d.set(relayMac(token, d, 16), 16);
  return d;
}

/** HMAC-SHA256 under `token` of the first `len` bytes of `d`, 16 of its bytes */
function relayMac(token: Uint8Array, d: Uint8Array, len: number): Uint8Array {
  return createHmac("sha256", token).update(d.subarray(0, len)).digest().subarray(0, 16);
}

/** whether the 16 bytes after the first `len` are their MAC under `token` (in constant time) */
function macVerifies(token: Uint8Array, d: Uint8Array, len: number): boolean {
  const mac = relayMac(token, d, len);
  let x = 0;
  for (let i = 0; i < 16; i++) x |= mac[i]! ^ d[len + i]!;
  return x === 0;
}

const counterAt = (d: Uint8Array, at: number) => {
  const dv = new DataView(d.buffer, d.byteOffset + at, 8);
  return dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
};

/** the counter of a registration whose MAC verifies under `token`, else undefined */
export function checkRegistration(token: Uint8Array, d: Uint8Array): number | undefined {
  if (d.byteLength !== REGISTER_BYTES || !macVerifies(token, d, 16)) return undefined;
  return counterAt(d, 8);
}

/** the server's answer to registration `d` (taken), which came from `from` (a struct sockaddr_in) */
export function observedDatagram(token: Uint8Array, d: Uint8Array, from: Uint8Array): Uint8Array {
  const o = new Uint8Array(OBSERVED_BYTES);
  o.set(d.subarray(0, 16));
  o[0] = RelayType.observed;
  o.set(from.subarray(4, 8), 16); // IPv4
  o.set(from.subarray(2, 4), 20); // port, network order
  o.set(relayMac(token, o, 24), 24);
  return o;
}

export interface Observed {
  relayId: number;
  /** the registration's counter it answers */
  counter: number;
  ip: string;
  port: number;
}

/** the relay id an answer names (to find its token), or undefined when it cannot be one */
export function observedRelayId(d: Uint8Array): number | undefined {
  if (d.byteLength !== OBSERVED_BYTES || d[0] !== RelayType.observed || d[1] !== 0 || d[2] !== 0 || d[3] !== 0) return undefined;
  return new DataView(d.buffer, d.byteOffset, 8).getUint32(4);
}

/** an answer whose MAC verifies under `token`, else undefined */
export function checkObserved(token: Uint8Array, d: Uint8Array): Observed | undefined {
  const relayId = observedRelayId(d);
  if (relayId === undefined || !macVerifies(token, d, 24)) return undefined;
  return { relayId, counter: counterAt(d, 8), ip: `${d[16]}.${d[17]}.${d[18]}.${d[19]}`, port: (d[20]! << 8) | d[21]! };
}

/** a server's grant: register `relayId` with `token` at its UDP `port` */
export interface RelayGrant {
  port: number;
  relayId: number;
  token: Uint8Array;
}
export const GRANT_BYTES = 1 + 2 + 4 + 16;

export function encodeGrant(g: RelayGrant): Uint8Array {
  const b = new Uint8Array(GRANT_BYTES);
  b[0] = 1;
  const dv = new DataView(b.buffer);
  dv.setUint16(1, g.port);
  dv.setUint32(3, g.relayId >>> 0);
  b.set(g.token.subarray(0, 16), 7);
  return b;
}

export function decodeGrant(b: Uint8Array): RelayGrant | string {
  if (b.byteLength !== GRANT_BYTES) return `grant of ${b.byteLength} bytes (expected ${GRANT_BYTES})`;
  if (b[0] !== 1) return `grant version ${b[0]}`;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { port: dv.getUint16(1), relayId: dv.getUint32(3), token: b.slice(7) };
}


export interface DatagramHead {
  type: number;
  receiverId: number;
  counter: number;
}

/** the clear header of a datagram, or undefined when it cannot be one of ours */
export function readHead(d: Uint8Array): DatagramHead | undefined {
  if (d.byteLength < LANE_HEADER + LANE_TAG || d[1] !== 0 || d[2] !== 0 || d[3] !== 0) return undefined;
  const type = d[0]!;
  if (type !== LaneType.data && type !== LaneType.probe && type !== LaneType.probeReply) return undefined;
  const dv = new DataView(d.buffer, d.byteOffset, LANE_HEADER);
  return { type, receiverId: dv.getUint32(4), counter: dv.getUint32(8) * 2 ** 32 + dv.getUint32(12) };
}

/**
 * the payload of a datagram whose head is `h`, or undefined when it does not
 * authenticate under `key`; written into `dst` when given (`nonce`: 12 bytes of scratch)
 */
export function openDatagram(aead: Aead, key: Uint8Array, h: DatagramHead, d: Uint8Array, dst?: Uint8Array, nonce?: Uint8Array): Uint8Array | undefined {
  try {
    return aead.decrypt(d.subarray(LANE_HEADER), laneNonce(h.counter, nonce), d.subarray(0, LANE_HEADER), key, dst);
  } catch {
    return undefined;
  }
}

/** counters seen on one lane: each accepted once, none older than the window */
export class ReplayWindow {
  private highest = -1;
  private readonly seen = new Uint8Array(REPLAY_WINDOW);

  /** whether `counter` is new (and now recorded); call only after the datagram authenticated */
  accept(counter: number): boolean {
    if (counter > this.highest) {
      // slots between the old highest and the new one are unseen now
      const gap = Math.min(counter - this.highest, REPLAY_WINDOW);
      for (let i = 1; i <= gap; i++) this.seen[(this.highest + i) % REPLAY_WINDOW] = 0;
      this.highest = counter;
      this.seen[counter % REPLAY_WINDOW] = 1;
      return true;
    }
    if (this.highest - counter >= REPLAY_WINDOW) return false;
    const slot = counter % REPLAY_WINDOW;
    if (this.seen[slot]) return false;
    this.seen[slot] = 1;
    return true;
  }
}

/**
 * what each side of an exchange tells the other: send to my `port`, lane
 * `id`, sealed with `key`; over a relayed connection, to the server, in an
 * envelope to my `relayId` there (0: none)
 */
export interface LaneOffer {
  port: number;
  id: number;
  key: Uint8Array;
  relayId: number;
  /** our lane's public address as a tunnel server saw it (behind a NAT that changes ports), when known */
  public?: { ip: string; port: number };
}

export const OFFER_BYTES = 1 + 2 + 4 + 32 + 4 + 6;
const OFFER_VERSION = 2;

export function encodeOffer(o: LaneOffer): Uint8Array {
  const b = new Uint8Array(OFFER_BYTES);
  const dv = new DataView(b.buffer);
  b[0] = OFFER_VERSION;
  dv.setUint16(1, o.port);
  dv.setUint32(3, o.id >>> 0);
  b.set(o.key, 7);
  dv.setUint32(39, o.relayId >>> 0);
  const ip = o.public?.ip.split(".").map(Number);
  if (o.public && ip?.length === 4 && ip.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) {
    b.set(ip, 43);
    dv.setUint16(47, o.public.port);
  }
  return b;
}

/** an offer, or why not; port 0 is a refusal (no lane on this connection) */
export function decodeOffer(b: Uint8Array): LaneOffer | string {
  if (b.byteLength !== OFFER_BYTES) return `offer of ${b.byteLength} bytes (expected ${OFFER_BYTES})`;
  if (b[0] !== OFFER_VERSION) return `offer version ${b[0]}`;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const o: LaneOffer = { port: dv.getUint16(1), id: dv.getUint32(3), key: b.slice(7, 39), relayId: dv.getUint32(39) };
  const publicPort = dv.getUint16(47);
  if (publicPort !== 0) o.public = { ip: `${b[43]}.${b[44]}.${b[45]}.${b[46]}`, port: publicPort };
  return o;
}

export function newOffer(port: number, relayId = 0, publicAddr?: { ip: string; port: number }): LaneOffer {
  const id = crypto.getRandomValues(new Uint32Array(1))[0]!;
  return { port, id, key: crypto.getRandomValues(new Uint8Array(32)), relayId, ...(publicAddr ? { public: publicAddr } : {}) };
}

/**
 * where our datagrams to a peer reached directly go: its public address when
 * it has one and the connection's far end is that address (we reach it
 * through its NAT, whose UDP mapping is not its lane port), else the far end
 * at its lane port (the LAN, a port-keeping NAT, no NAT)
 */
export function directLaneTarget(farEndIp: string, theirs: LaneOffer): { ip: string; port: number } {
  return theirs.public && theirs.public.ip === farEndIp ? { ip: farEndIp, port: theirs.public.port } : { ip: farEndIp, port: theirs.port };
}
