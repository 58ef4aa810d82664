// Asks the upstream resolvers: UDP first, the same upstream over TCP when the
// answer comes back truncated, the next upstream on a timeout, SERVFAIL or
// REFUSED. The upstream that answered last is asked first next time, so a
// dead first nameserver costs one timeout, not one per query.
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { randomInt } from "node:crypto";
import dnsPacket, { type Answer } from "dns-packet";
import type { HostPort } from "../../config/net.ts";
import { isIP } from "../../config/net.ts";
import { RCODE, type Reply } from "./answer.ts";
import { EDNS_BUFFER } from "./message.ts";
import { formatUpstream } from "./upstreams.ts";

export interface Question {
  name: string;
  type: string;
  class: string;
}

export type AttemptResult = "ok" | "timeout" | "servfail" | "refused" | "error";

export interface ForwarderOptions {
  /** per attempt (UDP, or UDP then TCP) at one upstream */
  timeoutMs: number;
  /** called after each attempt, for metrics and logs */
  onAttempt?(upstream: string, result: AttemptResult, seconds: number, detail?: string): void;
}

export interface Forwarded {
  reply: Reply;
  upstream: string;
}

export class Forwarder {
  private preferred = 0;

  constructor(
    readonly upstreams: HostPort[],
    private readonly opts: ForwarderOptions,
  ) {}

  /** the first good answer, the last SERVFAIL/REFUSED one when no upstream did better, or undefined when none answered */
  async resolve(q: Question): Promise<Forwarded | undefined> {
    let fallback: Forwarded | undefined;
    const n = this.upstreams.length;
    for (let i = 0; i < n; i++) {
      const index = (this.preferred + i) % n;
      const up = this.upstreams[index]!;
      const label = formatUpstream(up);
      const t0 = performance.now();
      let result: AttemptResult;
      let reply: Reply | undefined;
      let detail: string | undefined;
      try {
        reply = await this.ask(up, q);
        result = reply.rcode === RCODE.SERVFAIL ? "servfail" : reply.rcode === RCODE.REFUSED ? "refused" : "ok";
      } catch (e) {
        result = e instanceof TimeoutError ? "timeout" : "error";
        detail = e instanceof Error ? e.message : String(e);
      }
      this.opts.onAttempt?.(label, result, (performance.now() - t0) / 1000, detail);
      if (result === "ok") {
        this.preferred = index;
        return { reply: reply!, upstream: label };
      }
      if (reply) fallback = { reply, upstream: label };
    }
    return fallback;
  }

  private async ask(up: HostPort, q: Question): Promise<Reply> {
    const deadline = Date.now() + this.opts.timeoutMs;
    const id = randomInt(0, 0x10000);
    const query = dnsPacket.encode({
      type: "query",
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: q.name, type: q.type as dnsPacket.RecordType, class: q.class as dnsPacket.RecordClass }],
      additionals: [{ name: ".", type: "OPT", udpPayloadSize: EDNS_BUFFER, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
    });
    let raw = await udpExchange(up, query, id, deadline);
    if (raw.readUInt16BE(2) & 0x0200) raw = await tcpExchange(up, query, id, deadline);
    return toReply(raw, q);
  }
}

export class TimeoutError extends Error {}

/** decodes an upstream's message; throws when it does not answer our question */
export function toReply(raw: Buffer, q: Question): Reply {
  const p = dnsPacket.decode(raw);
  const asked = p.questions?.[0];
  if (!asked || asked.name.toLowerCase() !== q.name.replace(/\.$/, "").toLowerCase() || asked.type !== q.type) throw new Error("answer to another question");
  const noOpt = (l: Answer[] | undefined) => (l ?? []).filter((a) => a.type !== "OPT");
  return { rcode: raw.readUInt16BE(2) & 0xf, aa: false, answers: noOpt(p.answers), authorities: noOpt(p.authorities), additionals: noOpt(p.additionals) };
}

// One socket per query: a fresh random source port makes a spoofed answer
// as hard to land as the 16-bit ID allows (together ~32 bits).
function udpExchange(up: HostPort, query: Buffer, id: number, deadline: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(up.host) === 6 ? "udp6" : "udp4");
    let finished = false;
    const done = (err: Error | undefined, msg?: Buffer) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.removeAllListeners("message");
      try {
        sock.close();
      } catch {
        // already closed
      }
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => done(new TimeoutError(`no answer from ${formatUpstream(up)} over UDP`)), Math.max(1, deadline - Date.now()));
    sock.on("error", (e) => done(e));
    sock.on("message", (msg) => {
      // stray or spoofed datagrams are ignored, not fatal: keep waiting
      if (msg.length < 12 || msg.readUInt16BE(0) !== id || !(msg.readUInt16BE(2) & 0x8000)) return;
      done(undefined, msg);
    });
    // Connected, so the kernel drops datagrams from anyone else and an ICMP
    // "port unreachable" fails the attempt at once instead of at the timeout.
    try {
      sock.connect(up.port, up.host, () => {
        if (finished) return; // timed out before the connect completed
        try {
          sock.send(query, (e) => e && done(e));
        } catch (e) {
          done(e as Error);
        }
      });
    } catch (e) {
      done(e as Error);
    }
  });
}

function tcpExchange(up: HostPort, query: Buffer, id: number, deadline: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: up.host, port: up.port });
    let buf: Buffer = Buffer.alloc(0);
    let finished = false;
    const done = (err: Error | undefined, msg?: Buffer) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => done(new TimeoutError(`no answer from ${formatUpstream(up)} over TCP`)), Math.max(1, deadline - Date.now()));
    sock.on("error", (e) => done(e));
    sock.on("connect", () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const msg = buf.subarray(2, 2 + len);
      if (msg.length < 12 || msg.readUInt16BE(0) !== id) return done(new Error("TCP answer with a wrong ID"));
      done(undefined, msg);
    });
    sock.on("end", () => done(new Error("TCP connection closed before an answer")));
  });
}
