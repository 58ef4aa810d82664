// The agent's TCP transport: listens with SO_REUSEPORT and dials from the
// port it listens on, so the NAT in front of an agent maps that one port for
// every peer (endpoint-independent mapping). The address the tunnel server
// observes is then the address a peer behind another NAT can punch to, and a
// hole-punching dial from each side meets the other's NAT mapping (TCP
// simultaneous open). Stock @libp2p/tcp dials from ephemeral ports, which
// defeats both (DESIGN §7).
//
// - Listening: @libp2p/tcp's listener with `reusePort: true`.
// - Dialling: a socket made through libc (libc-socket.ts) bound to the
//   listening port; when that port is busy for this destination (the same
//   4-tuple in use or in TIME_WAIT: EADDRINUSE / EADDRNOTAVAIL) an ordinary
//   dial from an ephemeral port instead. Hole-punching dials never fall back:
//   from any other port they cannot work.
// - Which dials use the listening port: hole-punching dials always; other
//   dials unless `fromListenPort` says no (the agent keeps ordinary dials to
//   a peer it reaches through a relay on ephemeral ports, so they do not open
//   the NAT towards that peer early and collide with the punch's 4-tuple).
// - Roles: a hole-punched connection comes from two `connect()`s (or a SYN
//   that meets the other side's listener), so "who dialled" says nothing
//   about who leads multistream-select and noise. The hole-punch coordinator
//   registers each punch with the role it must play (`expectPunch`); dials
//   and accepted sockets from that address are upgraded in that role. The
//   libp2p dial queue drops `initiator`, so punch dials go straight to the
//   transport (`dialHolePunch`).
import net from "node:net";
import { serviceCapabilities, transportSymbol, type Connection, type CreateListenerOptions, type DialTransportOptions, type Listener, type Logger as P2PLogger, type PeerId, type Transport, type Upgrader } from "@libp2p/interface";
import { tcp } from "@libp2p/tcp";
import type { Multiaddr } from "@multiformats/multiaddr";
import { tcpTarget } from "../addresses.ts";
import { closeFd, connectFromPort, reusePortDialSupport, SocketError } from "./libc-socket.ts";
import { SocketConnection } from "./socket-connection.ts";

export const TRANSPORT_TAG = "@edgemesh/tcp-shared-port";

export type PunchRole = "initiator" | "responder";

export interface SharedPortTcpInit {
  /** a plain-text log line (info/warn) for the mode in use */
  log?: (level: "info" | "warn", msg: string) => void;
}

export interface DialPolicyInput {
  ma: Multiaddr;
  peer?: string;
  priority?: number;
}

export interface DialCounters {
  fromListenPort: number;
  ephemeral: number;
  /** listen-port dials that fell back to an ephemeral port (port busy for that destination) */
  fallbacks: number;
}

interface ComponentsLike {
  logger: { forComponent(name: string): P2PLogger };
}

function key(host: string, port: number): string {
  return `${host.replace(/^::ffff:/, "")}:${port}`;
}

export class SharedPortTcp implements Transport {
  readonly [transportSymbol] = true as const;
  readonly [Symbol.toStringTag] = TRANSPORT_TAG;
  readonly [serviceCapabilities] = ["@libp2p/transport"];
  /** decides whether an ordinary dial leaves from the listening port */
  fromListenPort: (d: DialPolicyInput) => boolean = () => true;
  readonly counters: DialCounters = { fromListenPort: 0, ephemeral: 0, fallbacks: 0 };
  readonly mode: { sharedPort: boolean; reason: string };
  private readonly inner: Transport;
  private readonly listeners: Listener[] = [];
  private readonly punches = new Map<string, { role: PunchRole; peer: PeerId; arrived: boolean }>();
  private readonly log: P2PLogger;
  private upgrader?: Upgrader;
  private announced = false;

  constructor(
    components: ComponentsLike,
    private readonly init: SharedPortTcpInit = {},
  ) {
    this.log = components.logger.forComponent("edgemesh:tcp");
    // the listener: @libp2p/tcp's, listening with SO_REUSEPORT so our own
    // dialling sockets may bind the same port
    this.inner = tcp({
      inboundSocketInactivityTimeout: 0,
      outboundSocketInactivityTimeout: 0,
      listenOpts: { reusePort: true } as never,
    })(components as never);
    const support = reusePortDialSupport();
    this.mode = { sharedPort: support.available, reason: support.reason };
  }

  listenFilter = (addrs: Multiaddr[]): Multiaddr[] => this.inner.listenFilter(addrs);
  dialFilter = (addrs: Multiaddr[]): Multiaddr[] => this.inner.dialFilter(addrs);

  /** the TCP port we listen on (the first listener's), once listening */
  listenPort(): number | undefined {
    for (const l of this.listeners) {
      for (const a of l.getAddrs()) {
        const t = tcpTarget(a);
        if (t && t.port > 0) return t.port;
      }
    }
    return undefined;
  }

  createListener(options: CreateListenerOptions): Listener {
    this.upgrader = options.upgrader;
    const listener = this.inner.createListener({ ...options, upgrader: this.punchAwareUpgrader(options.upgrader) });
    this.listeners.push(listener);
    listener.addEventListener("listening", () => this.announceMode());
    listener.addEventListener("close", () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    });
    return listener;
  }

  private announceMode(): void {
    if (this.announced) return;
    this.announced = true;
    const port = this.listenPort();
    if (this.mode.sharedPort) this.init.log?.("info", `tcp: dials leave from the listening port ${port} (SO_REUSEPORT through libc): hole punching between NATed agents is possible`);
    else this.init.log?.("warn", `tcp: dials use ephemeral ports (${this.mode.reason}): agents behind two NATs stay relayed`);
  }

  /**
   * Expect a hole punch with `peer` at `host:port`, playing `role`: sockets we
   * accept from there are upgraded in that role instead of as responder.
   * Returns the function that ends the expectation.
   */
  expectPunch(host: string, port: number, peer: PeerId, role: PunchRole): () => void {
    const k = key(host, port);
    const entry = { role, peer, arrived: false };
    this.punches.set(k, entry);
    return () => {
      if (this.punches.get(k) === entry) this.punches.delete(k);
    };
  }

  /** whether the peer's punching SYN from host:port reached our listener (our own dial had been refused, or not sent yet) */
  punchArrived(host: string, port: number): boolean {
    return this.punches.get(key(host, port))?.arrived ?? false;
  }

  private punchAwareUpgrader(upgrader: Upgrader): Upgrader {
    const wrapped = Object.create(upgrader) as Upgrader;
    wrapped.upgradeInbound = async (maConn, opts) => {
      const t = tcpTarget(maConn.remoteAddr);
      const punch = t ? this.punches.get(key(t.host, t.port)) : undefined;
      if (punch) punch.arrived = true;
      if (punch?.role !== "initiator") return upgrader.upgradeInbound(maConn, opts);
      // the peer's punching SYN reached our listener before our own SYN left:
      // we still lead, as the peer's side expects
      this.log("punch from %s accepted by the listener; upgrading as initiator", maConn.remoteAddr.toString());
      maConn.remoteAddr = maConn.remoteAddr.encapsulate(`/p2p/${punch.peer.toString()}`);
      // yamux takes its client/server role from the connection's direction,
      // not from the upgrade's: the initiator must be its client
      (maConn as { direction: string }).direction = "outbound";
      await upgrader.upgradeOutbound(maConn, { ...opts, initiator: true } as never);
    };
    return wrapped;
  }

  /**
   * A hole-punching dial: from the listening port, upgraded in `role`,
   * bypassing the dial queue (which would drop the role, or merge the dial
   * into another pending dial to the same peer).
   */
  async dialHolePunch(ma: Multiaddr, role: PunchRole, signal: AbortSignal): Promise<Connection> {
    if (!this.upgrader) throw new Error("transport not listening");
    return this.dialWith(ma, { signal, upgrader: this.upgrader } as DialTransportOptions, role);
  }

  async dial(ma: Multiaddr, options: DialTransportOptions): Promise<Connection> {
    return this.dialWith(ma, options, undefined);
  }

  private async dialWith(ma: Multiaddr, options: DialTransportOptions, punch: PunchRole | undefined): Promise<Connection> {
    const target = tcpTarget(ma);
    if (!target) {
      if (punch) throw new Error(`cannot hole-punch to ${ma.toString()}: not an IP TCP address`);
      return this.inner.dial(ma, options);
    }
    const peer = ma.getComponents().findLast((c) => c.name === "p2p")?.value;
    const port = this.listenPort();
    const wantShared = punch !== undefined || this.fromListenPort({ ma, peer, priority: (options as { priority?: number }).priority });
    let socket: net.Socket | undefined;
    if (wantShared && this.mode.sharedPort && port) {
      try {
        const fd = await connectFromPort({ host: target.host, port: target.port, localPort: port, signal: options.signal, eager: punch !== undefined });
        try {
          socket = net.connect({ fd } as net.NetConnectOpts);
        } catch (e) {
          closeFd(fd);
          throw e;
        }
        this.counters.fromListenPort++;
      } catch (e) {
        const code = (e as SocketError).code;
        if (punch || (code !== "EADDRINUSE" && code !== "EADDRNOTAVAIL")) throw e;
        this.counters.fallbacks++;
        this.log("port %d busy towards %s:%d (%s), dialling from an ephemeral port", port, target.host, target.port, code);
      }
    } else if (punch) {
      throw new Error(this.mode.sharedPort ? "not listening yet" : `hole punching needs dials from the listening port: ${this.mode.reason}`);
    }
    if (!socket) {
      // an ordinary dial from an ephemeral port: stock @libp2p/tcp's
      this.counters.ephemeral++;
      return this.inner.dial(ma, options);
    }
    if (!socket.listenerCount("error")) socket.on("error", () => {});
    socket.setNoDelay(true);
    socket.setKeepAlive(true);
    // the punch responder's connection counts as inbound: yamux takes its
    // client/server role from this direction, not from the upgrade's
    const direction = punch === "responder" ? "inbound" : "outbound";
    const maConn = new SocketConnection(socket, { remoteAddr: ma, direction, log: this.log.newScope("connection") });
    try {
      return await options.upgrader.upgradeOutbound(maConn, punch ? ({ ...options, initiator: punch === "initiator" } as never) : options);
    } catch (e) {
      maConn.abort(e as Error);
      throw e;
    }
  }
}

/** the transport factory, for libp2p's `transports` list */
export function sharedPortTcp(init: SharedPortTcpInit = {}): (components: unknown) => Transport {
  return (components) => new SharedPortTcp(components as ComponentsLike, init);
}
