// The wire side of a query: checking what a client sent before trusting it,
// and encoding a reply that fits the client's buffer. dns-packet does the
// encoding; this file decides what is acceptable and what to cut.
import dnsPacket, { type Answer, type OptAnswer } from "dns-packet";
import { RCODE, type Reply } from "./answer.ts";

/** our EDNS buffer size: the DNS flag day 2020 value, safe from IP fragmentation */
export const EDNS_BUFFER = 1232;
/** UDP limit for a client without EDNS (RFC 1035) */
export const CLASSIC_UDP = 512;
const RCODE_BADVERS = 16;

export interface Query {
  id: number;
  rd: boolean;
  cd: boolean;
  /** the name as the client spelled it: echoed back as is (0x20 case randomisation) */
  name: string;
  type: string;
  class: string;
  /** present when the client sent an OPT record */
  edns?: { udpSize: number; do: boolean };
}

export type Parsed =
  | { ok: true; query: Query }
  /** reply is undefined when the packet deserves no answer at all */
  | { ok: false; reason: string; reply?: Buffer };

const header = (id: number, opcode: number, rcode: number): Buffer => {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(0x8000 | (opcode << 11) | rcode, 2);
  return b;
};

/**
 * Question names we accept: labels of printable ASCII without '.', '\' or
 * spaces, no compression. dns-packet decodes labels as UTF-8 text joined by
 * dots, so anything else would not survive a round trip through it.
 */
function questionNameEnd(buf: Buffer, offset: number): number | undefined {
  let total = 0;
  for (;;) {
    if (offset >= buf.length) return undefined;
    const len = buf[offset]!;
    offset++;
    if (len === 0) return offset;
    if (len > 63) return undefined;
    total += len + 1;
    if (total > 254 || offset + len > buf.length) return undefined;
    for (let i = offset; i < offset + len; i++) {
      const c = buf[i]!;
      if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) return undefined;
    }
    offset += len;
  }
}

export function parseQuery(buf: Buffer): Parsed {
  // Too short to carry an ID: there is no one to answer.
  if (buf.length < 12) return { ok: false, reason: "short" };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  // A response sent to us is never answered: that is how reflection loops start.
  if (flags & 0x8000) return { ok: false, reason: "response" };
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return { ok: false, reason: "opcode", reply: header(id, opcode, RCODE.NOTIMP) };
  const qdcount = buf.readUInt16BE(4);
  if (qdcount !== 1) return { ok: false, reason: "questions", reply: header(id, 0, RCODE.FORMERR) };
  if (questionNameEnd(buf, 12) === undefined) return { ok: false, reason: "name", reply: header(id, 0, RCODE.FORMERR) };
  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(buf);
  } catch {
    return { ok: false, reason: "decode", reply: header(id, 0, RCODE.FORMERR) };
  }
  const q = packet.questions?.[0];
  if (!q) return { ok: false, reason: "decode", reply: header(id, 0, RCODE.FORMERR) };
  const opts = (packet.additionals ?? []).filter((a): a is OptAnswer => a.type === "OPT");
  if (opts.length > 1) return { ok: false, reason: "opt", reply: header(id, 0, RCODE.FORMERR) };
  const query: Query = { id, rd: packet.flag_rd, cd: packet.flag_cd, name: q.name, type: q.type, class: q.class ?? "IN" };
  const opt = opts[0];
  if (opt) {
    query.edns = { udpSize: opt.udpPayloadSize, do: opt.flag_do };
    if (opt.ednsVersion !== 0) {
      const reply = encodeReply(query, { rcode: RCODE_BADVERS, aa: false, answers: [], authorities: [], additionals: [] }, CLASSIC_UDP);
      return { ok: false, reason: "ednsversion", reply };
    }
  }
  return { ok: true, query };
}

/**
 * the most a reply to this query may take: over UDP the client's EDNS size,
 * never below 512 and never above EDNS_BUFFER (whatever size a UDP query
 * claims, and its source address may be forged, the reply stays within
 * 1,232 bytes; the rest is TC and the full answer over TCP, zone and
 * forwarded answers alike); 64 KiB over TCP
 */
export function replyLimit(query: Query, transport: "udp" | "tcp"): number {
  if (transport === "tcp") return 65535;
  return query.edns ? Math.min(EDNS_BUFFER, Math.max(CLASSIC_UDP, query.edns.udpSize)) : CLASSIC_UDP;
}

function packetFor(query: Query, reply: Reply, tc: boolean, answers: Answer[], authorities: Answer[], additionals: Answer[]): dnsPacket.Packet {
  const flags =
    (reply.rcode & 0xf) |
    (reply.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) |
    (tc ? dnsPacket.TRUNCATED_RESPONSE : 0) |
    (query.rd ? dnsPacket.RECURSION_DESIRED : 0) |
    dnsPacket.RECURSION_AVAILABLE |
    (query.cd ? dnsPacket.CHECKING_DISABLED : 0);
  const extra = [...additionals];
  if (query.edns) {
    extra.push({
      name: ".",
      type: "OPT",
      udpPayloadSize: EDNS_BUFFER,
      extendedRcode: reply.rcode >> 4,
      ednsVersion: 0,
      flags: 0,
      flag_do: false,
      options: [],
    });
  }
  return {
    type: "response",
    id: query.id,
    flags,
    questions: [{ name: query.name, type: query.type as dnsPacket.RecordType, class: query.class as dnsPacket.RecordClass }],
    answers,
    authorities,
    additionals: extra,
  };
}

/**
 * Encodes the reply within `limit` bytes. Additional records go first (they
 * are optional, no TC needed); when the answer itself does not fit, as many
 * answer records as fit are kept and TC tells the client to ask over TCP.
 */
export function encodeReply(query: Query, reply: Reply, limit: number): Buffer {
  const full = dnsPacket.encode(packetFor(query, reply, false, reply.answers, reply.authorities, reply.additionals));
  if (full.length <= limit) return full;
  const bare = dnsPacket.encode(packetFor(query, reply, false, reply.answers, reply.authorities, []));
  if (bare.length <= limit) return bare;
  let lo = 0;
  let hi = reply.answers.length - 1;
  let best = dnsPacket.encode(packetFor(query, reply, true, [], [], []));
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const b = dnsPacket.encode(packetFor(query, reply, true, reply.answers.slice(0, mid + 1), [], []));
    if (b.length <= limit) {
      best = b;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best;
}

/** a header-only reply with this rcode, for when even the question cannot be echoed */
export function errorHeader(id: number, rcode: number): Buffer {
  return header(id, 0, rcode);
}
