// Our lane socket's public address, as tunnel servers see it (docs/podnet.md,
// "Where to send"): an agent registered with a server's lane relay gets each
// registration answered with the address it came from. Offers carry it, so a
// peer reaching us through a NAT that changed the lane's port sends there.
// The reader thread tells each server's answer when it changes and every
// 10 s; an answer older than STALE_MS no longer counts (a server restarted
// and forgot our grant), and the next offer asks again.
import type { Logger } from "../../log.ts";

/** an answer this old no longer counts (the reader thread repeats them every 10 s) */
export const STALE_MS = 30_000;

export interface Address {
  ip: string;
  port: number;
}

export type Told = "first" | "changed" | "same";

export class PublicLaneAddress {
  /** by server ("ip:port" of its lane relay), in the order they first answered */
  private readonly seen = new Map<string, Address & { at: number }>();
  private readonly waiters = new Set<() => void>();
  private asking?: Promise<void>;
  private failedAt = -Infinity;

  constructor(
    /** servers we may ask, nearest first */
    private readonly servers: () => Array<{ peer: string; ip: string }>,
    /** asks `peer` for a grant and has the reader thread register with it (rejects when it cannot) */
    private readonly register: (peer: string, ip: string) => Promise<unknown>,
    private readonly log: Logger,
    /** how long after no server answered it is asked again (ms) */
    private readonly retryMs: number,
    /** how long one server gets to answer (ms) */
    private readonly answerMs = 1000,
  ) {}

  /** the address the first server still answering saw */
  current(now = Date.now()): Address | undefined {
    for (const [server, a] of this.seen) {
      if (now - a.at <= STALE_MS) return { ip: a.ip, port: a.port };
      this.seen.delete(server);
    }
    return undefined;
  }

  /** a server's answer; whether it is the first we have, a change of the one we offer, or neither */
  told(server: string, ip: string, port: number, now = Date.now()): Told {
    const offered = this.current(now);
    const offeredBy = this.seen.keys().next().value;
    this.seen.set(server, { ip, port, at: now });
    for (const wake of this.waiters) wake();
    if (!offered) return "first";
    return server === offeredBy && (offered.ip !== ip || offered.port !== port) ? "changed" : "same";
  }

  /** starts asking a server when none answers (at most one round at a time, and again only after retryMs) */
  kick(): void {
    if (this.current() || this.asking || Date.now() - this.failedAt < this.retryMs || this.servers().length === 0) return;
    this.asking = this.ask().finally(() => (this.asking = undefined));
  }

  /** for an offer: the address, after asking for it if need be (up to `waitMs`) */
  async get(waitMs: number): Promise<Address | undefined> {
    this.kick();
    if (!this.current() && this.asking) await this.answer(waitMs);
    return this.current();
  }

  private async ask(): Promise<void> {
    for (const s of this.servers()) {
      try {
        await this.register(s.peer, s.ip);
        if (!this.current()) await this.answer(this.answerMs);
        if (this.current()) return;
        this.log.debug("no answer from this server's lane relay (an older server, or UDP blocked)", { server: s.ip });
      } catch (err) {
        this.log.debug("no public lane address from this server", { server: s.ip, error: (err as Error).message });
      }
    }
    this.failedAt = Date.now();
  }

  /** resolves at the next answer from any server, or after `ms` */
  private async answer(ms: number): Promise<void> {
    let wake = () => {};
    const told = new Promise<void>((r) => this.waiters.add((wake = r)));
    const timer = setTimeout(wake, ms);
    await told;
    clearTimeout(timer);
    this.waiters.delete(wake);
  }
}
