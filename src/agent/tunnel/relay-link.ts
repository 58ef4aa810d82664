// Keeps one connection and relay reservation on one tunnel server, forever:
// reconnects with capped exponential backoff (≤ 5 s, so a relayed path is back
// within seconds of the server returning) and jitter, so a server that is
// down never blocks the others and a server that returns is used again.
import type { Connection, PeerId } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import type { Logger } from "../../log.ts";
import { libp2pTransport, type TunnelNode } from "../../tunnel/node.ts";
import type { Membership } from "../../tunnel/membership.ts";
import { lookup } from "node:dns/promises";
import { describeAddr, isCircuit, tcpAddr, tcpTarget } from "../../tunnel/addresses.ts";
import { SECRET_MISMATCH, type SecretMismatches } from "../../tunnel/secret-mismatch.ts";
import { LivenessPinger } from "../../tunnel/liveness.ts";

interface ReservationStore {
  addRelay(peer: PeerId, type: "configured"): Promise<unknown>;
  hasReservation(peer: PeerId): boolean;
  addEventListener(type: "relay:removed", fn: (e: CustomEvent<{ relay: PeerId }>) => void): void;
  removeEventListener(type: "relay:removed", fn: (e: CustomEvent<{ relay: PeerId }>) => void): void;
}

/** the relay transport's reservation store (not public API; isolated here) */
export function reservationStore(node: TunnelNode): ReservationStore {
  const store = libp2pTransport(node, "@libp2p/circuit-relay-v2-transport")?.reservationStore as ReservationStore | undefined;
  if (!store) throw new Error("circuit relay transport missing");
  return store;
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/** next delay: doubled, capped, with ±25% jitter so agents don't reconnect in step */
export function nextBackoff(current: number, o: BackoffOptions, rand = Math.random): number {
  const base = Math.min(current * 2, o.maxMs);
  return Math.round(base * (0.75 + rand() * 0.5));
}

const STILL_DOWN_EVERY_MS = 60_000;

/** bound on one reservation attempt: libp2p's own can wait for ever behind another server's (seen with two servers) */
const RESERVE_TIMEOUT_MS = 12_000;

/** liveness of a reserved server: a ping this often, this long to answer, this many misses in a row close it */
const LIVENESS_EVERY_MS = 500;
const LIVENESS_TIMEOUT_MS = 1_000;
const LIVENESS_MISSES = 3;

function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(timer));
}

export class RelayLink {
  peer?: PeerId;
  connected = false;
  reserved = false;
  /** the last liveness probe went unanswered: new streams avoid relaying through it */
  suspect = false;
  /** what answered at the address: a tunnel server or a relay agent */
  kind?: "server" | "relay";
  lastError = "";
  /** when the server stopped being usable (undefined while reserved) */
  downSince?: number = Date.now();
  private lastWarnAt = 0;
  private stopped = false;
  private wake?: () => void;
  private readonly loop: Promise<void>;
  private readonly backoff: BackoffOptions;
  /** the address the last attempt dialled: `addr`, or `addr` with its name resolved */
  private dialed: Multiaddr;

  constructor(
    readonly address: string,
    private readonly addr: Multiaddr,
    private readonly node: TunnelNode,
    private readonly membership: Membership,
    private readonly log: Logger,
    private readonly opts: {
      secretMismatches?: Pick<SecretMismatches, "failedSince">;
      /** told the "ip:port" each attempt dials (a server given by name is resolved first) */
      onDialTarget?: (hostPort: string) => void;
      backoff?: BackoffOptions;
    } = {},
  ) {
    this.backoff = opts.backoff ?? { initialMs: 500, maxMs: 5_000 };
    this.dialed = addr;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let delay = this.backoff.initialMs;
    const store = reservationStore(this.node);
    while (!this.stopped) {
      let conn: Connection | undefined;
      const attemptStart = Date.now();
      try {
        // a name is resolved here, each attempt, so the dial targets an IP:
        // the transport dials servers from the listening port only by IP, and
        // a server that moves to a new address is found again
        this.dialed = await resolveServer(this.addr);
        this.opts.onDialTarget?.(describeAddr(this.dialed));
        conn = await this.node.dial(this.dialed, { signal: AbortSignal.timeout(10_000) });
        this.connected = true;
        this.log.debug("tunnel server connected, waiting for its certificate", { server: this.address });
        const claim = await this.membership.waitVerified(conn.remotePeer, 10_000);
        this.log.debug("tunnel server verified, reserving", { server: this.address, claim: claim ? `${claim.role} ${claim.nodeName}` : "none" });
        if (!claim) throw new Error("server did not identify as a mesh member");
        // a tunnel server, or a relay agent (its certificate has the relay role)
        if (claim.role !== "server" && !claim.relay) throw new Error(`peer at ${this.address} is ${claim.role} ${claim.nodeName}, not a server or relay`);
        this.kind = claim.role === "server" ? "server" : "relay";
        this.peer = conn.remotePeer;
        if (!store.hasReservation(conn.remotePeer)) await withDeadline(store.addRelay(conn.remotePeer, "configured"), RESERVE_TIMEOUT_MS, `no reservation within ${RESERVE_TIMEOUT_MS} ms`);
        this.reserved = true;
        this.lastError = "";
        const after = this.downSince === undefined ? undefined : Math.round((Date.now() - this.downSince) / 1000);
        this.downSince = undefined;
        this.log.info("relay reservation acquired", { server: this.address, name: claim.nodeName, peer: conn.remotePeer.toString(), ...(after !== undefined && after >= 10 ? { downS: after } : {}) });
        delay = this.backoff.initialMs;
        await this.untilLost(conn, store);
        this.downSince = Date.now();
        if (!this.stopped) this.log.warn("lost tunnel server, reconnecting", { server: this.address });
      } catch (e) {
        // whatever error the layers above saw, a failed secret check is the cause
        const mismatch = await this.opts.secretMismatches?.failedSince([describeAddr(this.dialed)], attemptStart);
        const why = mismatch ? SECRET_MISMATCH : (e as Error).message || String(e);
        const now = Date.now();
        this.downSince ??= now;
        const downS = Math.round((now - this.downSince) / 1000);
        // a new reason at once; the same one again once a minute, with how long it has lasted
        if (why !== this.lastError || now - this.lastWarnAt >= STILL_DOWN_EVERY_MS) {
          this.log.warn(why === this.lastError ? "tunnel server still unreachable" : "cannot reach tunnel server", { server: this.address, error: why, downS, retryMs: delay });
          this.lastWarnAt = now;
        }
        this.lastError = why;
      } finally {
        this.connected = false;
        this.reserved = false;
        this.suspect = false;
      }
      if (this.stopped) break;
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      delay = nextBackoff(delay, this.backoff);
    }
  }

  /**
   * Resolves when the direct connection to the server closes or the
   * reservation is dropped. A server whose host vanished sends no RST: the
   * connection would look open until libp2p's 10 s pings fail, and relayed
   * connections through it would take new streams that go nowhere. So the
   * server is probed twice a second on this connection: after one miss (1 s
   * without an answer) new streams avoid it (`suspect`, `reserved` false);
   * after three in a row the connection is closed, which closes the relayed
   * connections through it, and peers are reached through another server.
   */
  private untilLost(conn: Connection, store: ReservationStore): Promise<void> {
    return new Promise((resolve) => {
      const peer = conn.remotePeer;
      let misses = 0;
      let probing = false;
      const pinger = new LivenessPinger(conn);
      const probe = setInterval(() => {
        if (probing || conn.status !== "open") return;
        probing = true;
        pinger.ping(AbortSignal.timeout(LIVENESS_TIMEOUT_MS)).then(
          () => {
            misses = 0;
            this.suspect = false;
            this.reserved = store.hasReservation(peer);
          },
          () => {
            misses++;
            this.suspect = true;
            this.reserved = false;
            if (misses >= LIVENESS_MISSES && conn.status === "open") {
              this.log.warn("tunnel server stopped answering: closing its connection, relayed peers move to another server", { server: this.address, missedProbes: misses, probeTimeoutMs: LIVENESS_TIMEOUT_MS });
              conn.abort(new Error("edgemesh: tunnel server stopped answering pings"));
            }
          },
        ).finally(() => (probing = false));
      }, LIVENESS_EVERY_MS);
      const check = () => {
        const open = this.node.getConnections(peer).some((c) => c.status === "open" && !isCircuit(c.remoteAddr));
        if (this.stopped || !open || !store.hasReservation(peer)) {
          clearInterval(probe);
          pinger.close();
          clearInterval(timer);
          store.removeEventListener("relay:removed", onRemoved);
          this.wake = undefined;
          resolve();
        }
      };
      const onRemoved = (e: CustomEvent<{ relay: PeerId }>) => {
        if (e.detail.relay.equals(peer)) setTimeout(check, 0);
      };
      store.addEventListener("relay:removed", onRemoved);
      const timer = setInterval(check, 1000);
      this.wake = () => {
        clearInterval(probe);
        pinger.close();
        clearInterval(timer);
        resolve();
      };
    });
  }

  /** round-trip time to the server (libp2p's ping), for choosing the nearest; Infinity when unknown */
  rttMs(): number {
    const conn = this.peer && this.node.getConnections(this.peer).find((c) => c.status === "open" && !isCircuit(c.remoteAddr));
    return typeof conn?.rtt === "number" ? conn.rtt : Infinity;
  }

  /** the IPv4 address the last attempt dialled (a name resolved), if it was one */
  dialedIp(): string | undefined {
    const host = tcpTarget(this.dialed)?.host;
    return host && /^\d+\.\d+\.\d+\.\d+$/.test(host) ? host : undefined;
  }

  /** the circuit address prefix through this server, when reserved */
  relayPrefix(): string | undefined {
    if (!this.peer) return undefined;
    return `${this.dialed.toString()}/p2p/${this.peer.toString()}/p2p-circuit`;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }
}

/** /dns…/NAME/tcp/PORT → /ip4|ip6/IP/tcp/PORT (the system resolver, so /etc/hosts counts); IP addresses unchanged */
async function resolveServer(ma: Multiaddr): Promise<Multiaddr> {
  const m = /^\/dns[46]?\/([^/]+)\/tcp\/(\d+)$/.exec(ma.toString());
  if (!m) return ma;
  try {
    const { address } = await lookup(m[1]!);
    return tcpAddr(address, Number(m[2]));
  } catch (e) {
    throw new Error(`cannot resolve ${m[1]}: ${(e as { code?: string }).code ?? (e as Error).message}`);
  }
}
