// Encoded zone replies, reused. A zone answer is a pure function of the
// query's bytes (all but its ID), the transport and the zone, and clients ask
// the same few names over and over; decoding, answering and encoding cost
// most of a query's CPU, so a repeat only copies the reply and patches its ID.
// Everything is dropped when the zone is rebuilt, so a change shows at once.
import type { Transport } from "./resolver.ts";

export interface MemoHit {
  reply: Buffer;
  type: string;
  rcode: number;
}

// Bounded: at most this many entries of at most MAX_REPLY bytes each (~3 MiB)
const MAX_ENTRIES = 2048;
const MAX_REPLY = 1232;
const MAX_QUERY = 512;

export class ReplyMemo {
  private zone: unknown;
  private readonly entries = new Map<string, { reply: Buffer; type: string; rcode: number }>();

  private key(packet: Buffer, transport: Transport): string | undefined {
    if (packet.length < 12 || packet.length > MAX_QUERY) return undefined;
    return (transport === "udp" ? "u" : "t") + packet.toString("latin1", 2);
  }

  /** the stored reply with this packet's ID, or undefined */
  get(zone: unknown, packet: Buffer, transport: Transport): MemoHit | undefined {
    if (zone !== this.zone) {
      this.entries.clear();
      this.zone = zone;
      return undefined;
    }
    const k = this.key(packet, transport);
    const e = k === undefined ? undefined : this.entries.get(k);
    if (!e) return undefined;
    const reply = Buffer.from(e.reply);
    reply[0] = packet[0]!;
    reply[1] = packet[1]!;
    return { reply, type: e.type, rcode: e.rcode };
  }

  put(zone: unknown, packet: Buffer, transport: Transport, hit: MemoHit): void {
    if (zone !== this.zone || hit.reply.length > MAX_REPLY) return;
    const k = this.key(packet, transport);
    if (k === undefined) return;
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(k, { reply: Buffer.from(hit.reply), type: hit.type, rcode: hit.rcode });
  }
}
