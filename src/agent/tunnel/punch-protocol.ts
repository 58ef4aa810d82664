// The hole-punch coordination protocol `/edgemesh/punch/1.0.0`, spoken on a
// stream over the relayed connection between two agents. It follows DCUtR's
// exchange: the initiator sends CONNECT with its public address and starts a
// clock, the responder answers CONNECT with its own, the initiator sends SYNC
// and dials half a round trip later, while the responder dials as SYNC
// arrives, so both SYNs cross the NATs at about the same time (TCP
// simultaneous open). Frames are the proxy protocol's: [u16 length][JSON].
// Pure parts only: messages, who initiates, when to try again.
import type { Stream } from "@libp2p/interface";
import { tcpTarget } from "../../tunnel/addresses.ts";
import { encodeFrame } from "../../tunnel/proxy/frame.ts";
import { HeaderDecoder, ProxyHeaderError, type Decoded } from "../../tunnel/proxy/header.ts";
import { readHeader } from "../../tunnel/proxy/read-header.ts";
import { NAT_MAPPINGS, type NatMapping } from "./nat-report.ts";

export const PUNCH_PROTOCOL = "/edgemesh/punch/1.0.0";
const MAX_MESSAGE_BYTES = 1024;
const MAX_ADDRS = 8;

/** `nat`: the sender's NAT mapping behaviour (nat-report.ts); absent from agents before it existed */
export type PunchMessage = { type: "connect"; addrs: string[]; nat?: NatMapping } | { type: "sync" };

/** "host:port" with an IPv4 or bracketed IPv6 host */
const HOST_PORT = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;

export function validatePunchMessage(v: unknown): PunchMessage {
  const m = v as { type?: unknown; addrs?: unknown; nat?: unknown };
  if (m?.type === "sync") return { type: "sync" };
  if (m?.type === "connect" && Array.isArray(m.addrs) && m.addrs.length <= MAX_ADDRS && m.addrs.every((a) => typeof a === "string" && HOST_PORT.test(a))) {
    // an unknown value (a newer agent's) is left out, not an error
    const nat = NAT_MAPPINGS.find((x) => x === m.nat);
    return { type: "connect", addrs: m.addrs as string[], ...(nat ? { nat } : {}) };
  }
  throw new ProxyHeaderError(`not a punch message: ${JSON.stringify(v).slice(0, 200)}`);
}

export function encodePunchMessage(m: PunchMessage): Uint8Array {
  return encodeFrame(new TextEncoder().encode(JSON.stringify(validatePunchMessage(m))));
}

/** reads one message; `pending` holds bytes that came after the previous one */
export async function readPunchMessage(stream: Stream, pending: Uint8Array, timeoutMs: number): Promise<Decoded<PunchMessage>> {
  const decoder = new HeaderDecoder("punch message", MAX_MESSAGE_BYTES, validatePunchMessage);
  if (pending.byteLength > 0) {
    const got = decoder.push(pending);
    if (got) return got;
  }
  return readHeader(stream, decoder, timeoutMs, "punch message");
}

/**
 * Which side starts: the one with the smaller peer ID, whoever opened the
 * relayed connection. Both sides watch relayed connections, so exactly one
 * coordination runs per pair and two punches never cross.
 */
export function initiates(ourPeerId: string, theirPeerId: string): boolean {
  return ourPeerId < theirPeerId;
}

/** After `failures` failed rounds, how long to stay relayed before trying again: 30 s doubling to 15 min. */
export function retryDelayMs(failures: number): number {
  return Math.min(30_000 * 2 ** Math.max(0, failures - 1), 15 * 60_000);
}

/** "host:port" of a TCP multiaddr string, or undefined */
export function hostPortOf(ma: string): string | undefined {
  const t = tcpTarget(ma);
  if (!t) return undefined;
  return t.host.includes(":") ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

export function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(":");
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(hp.slice(i + 1)) };
}
