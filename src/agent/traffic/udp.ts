// UDP for one service port: a session per client address, each with its own
// upstream (a connected socket to a local backend, or a UDP proxy stream
// through the tunnel). Sessions expire when idle; a tunnel stream that is
// reset ends its session, and the client's next datagram opens a new one.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import type { Logger } from "../../log.ts";
import type { Service, ServicePort } from "../../model/index.ts";
import { targetPortFor } from "../../model/index.ts";
import type { TunnelAccess } from "../../model/tunnel.ts";
import { udpSession, type UdpSession } from "../../tunnel/proxy/client.ts";
import { isLocal } from "./connect.ts";
import type { Policy } from "./policy.ts";

export const UDP_IDLE_MS = 60_000;

interface Session {
  send(d: Uint8Array): void;
  close(): void;
  lastSeen: number;
}

export interface UdpContext {
  service: () => Service;
  port: ServicePort;
  policy: () => Policy;
  nodeName: string;
  tunnel: () => TunnelAccess | undefined;
  log: Logger;
  idleMs?: number;
  onDatagram?: (dir: "up" | "down", bytes: number) => void;
  /** sessions (open or opening) one client address may have; source addresses can be forged on a LAN */
  maxPerClient: number;
  /** sessions (open or opening) in all */
  maxSessions: number;
  /** a datagram that would have opened a session past a bound was dropped */
  onRefused?: (why: "client" | "port") => void;
}

export class UdpForwarder {
  private readonly sessions = new Map<string, Session>();
  private readonly opening = new Map<string, Uint8Array[]>();
  /** sessions open or opening per client IP */
  private readonly perClient = new Map<string, number>();
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(
    private readonly socket: UdpSocket,
    private readonly ctx: UdpContext,
  ) {
    socket.on("message", (msg, rinfo) => this.onMessage(msg, rinfo.address, rinfo.port));
    const idle = ctx.idleMs ?? UDP_IDLE_MS;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const [k, s] of this.sessions) if (now - s.lastSeen > idle) this.drop(k);
    }, Math.min(idle, 5000));
  }

  get active(): number {
    return this.sessions.size;
  }

  private drop(key: string): void {
    const s = this.sessions.get(key);
    if (!s) return;
    this.sessions.delete(key);
    this.release(key);
    s.close();
  }

  /** a session (open or opening) of this client went */
  private release(key: string): void {
    const ip = key.slice(0, key.lastIndexOf(":"));
    const n = (this.perClient.get(ip) ?? 1) - 1;
    if (n > 0) this.perClient.set(ip, n);
    else this.perClient.delete(ip);
  }

  private reply(ip: string, port: number, d: Uint8Array): void {
    this.ctx.onDatagram?.("down", d.length);
    this.socket.send(d, port, ip);
  }

  private onMessage(msg: Buffer, ip: string, port: number): void {
    const key = `${ip}:${port}`;
    this.ctx.onDatagram?.("up", msg.length);
    const s = this.sessions.get(key);
    if (s) {
      s.lastSeen = Date.now();
      s.send(msg);
      return;
    }
    const queued = this.opening.get(key);
    if (queued) {
      if (queued.length < 64) queued.push(msg);
      return;
    }
    const mine = this.perClient.get(ip) ?? 0;
    if (mine >= this.ctx.maxPerClient || this.sessions.size + this.opening.size >= this.ctx.maxSessions) {
      this.ctx.onRefused?.(mine >= this.ctx.maxPerClient ? "client" : "port");
      return;
    }
    this.perClient.set(ip, mine + 1);
    this.opening.set(key, [msg]);
    void this.open(key, ip, port);
  }

  private async open(key: string, ip: string, port: number): Promise<void> {
    const service = this.ctx.service();
    const tried = new Set<string>();
    let opened = false;
    try {
      for (let i = 0; i < 3; i++) {
        const ep = this.ctx.policy().pick(service, { clientIp: ip, exclude: tried });
        if (!ep) return; // no ready endpoints: drop
        tried.add(ep.ip);
        const target = targetPortFor(this.ctx.port, ep);
        if (target === undefined) continue;
        try {
          const session = isLocal(ep, this.ctx.nodeName) ? await this.local(ep.ip, target, ip, port, key) : await this.remote(ep.nodeName, ep.ip, target, ip, port, key);
          this.sessions.set(key, session);
          opened = true;
          for (const d of this.opening.get(key) ?? []) session.send(d);
          return;
        } catch (e) {
          this.ctx.log.debug("udp backend failed", { service: `${service.namespace}/${service.name}`, endpoint: ep.ip, error: (e as Error).message });
        }
      }
    } finally {
      this.opening.delete(key);
      if (!opened) this.release(key);
    }
  }

  private local(host: string, target: number, cip: string, cport: number, key: string): Promise<Session> {
    return new Promise((resolve, reject) => {
      const up = createSocket(host.includes(":") ? "udp6" : "udp4");
      up.on("error", () => this.drop(key));
      up.on("message", (d) => this.reply(cip, cport, d));
      up.connect(target, host, (err?: Error) => {
        if (err) return reject(err);
        resolve({ send: (d) => up.send(d), close: () => up.close(), lastSeen: Date.now() });
      });
    });
  }

  private async remote(node: string, host: string, target: number, cip: string, cport: number, key: string): Promise<Session> {
    const tunnel = this.ctx.tunnel();
    if (!tunnel) throw new Error("tunnel not up");
    const channel = await tunnel.open(node, { protocol: "udp", host, port: target });
    const s: UdpSession = udpSession(channel, {
      onDatagram: (d) => this.reply(cip, cport, d),
      // the stream ended (reset, idle on the far side): forget the session so
      // the next datagram reopens one
      onClose: () => {
        if (this.sessions.get(key)?.close === close) {
          this.sessions.delete(key);
          this.release(key);
        }
      },
    });
    const close = () => void s.close();
    return { send: (d) => void s.send(d), close, lastSeen: Date.now() };
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const k of [...this.sessions.keys()]) this.drop(k);
    this.socket.close();
  }
}
