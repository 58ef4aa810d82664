// The TCP listener (RFC 7766): length-prefixed messages, several per
// connection, answered as each is ready (pipelined, possibly out of order),
// closed after an idle period. Answers here are never truncated.
import { createServer, type Server, type Socket } from "node:net";
import type { HostPort } from "../../config/net.ts";
import type { PacketHandler } from "./server-udp.ts";

export interface TcpLimits {
  idleMs: number;
  maxConnections: number;
  /** queries being resolved at once on one connection before we stop reading from it */
  maxPipelined: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = { idleMs: 10_000, maxConnections: 256, maxPipelined: 32 };

export interface TcpListener {
  server: Server;
  /** stops listening and drops open connections (they would otherwise hold close() for their idle time) */
  close(): Promise<void>;
}

export function listenTcp(addr: HostPort, handle: PacketHandler, onError: (e: unknown) => void, limits: TcpLimits = DEFAULT_TCP_LIMITS, onRefused?: () => void): Promise<TcpListener> {
  const open = new Set<Socket>();
  const server = createServer((sock) => {
    // a bounded table: past the cap a client is closed at once, and counted
    if (open.size >= limits.maxConnections) {
      onRefused?.();
      sock.on("error", () => {});
      sock.destroy();
      return;
    }
    open.add(sock);
    sock.on("close", () => open.delete(sock));
    serveConnection(sock, handle, onError, limits);
  });
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of open) s.destroy();
    });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: addr.host, port: addr.port }, () => {
      server.off("error", reject);
      server.on("error", onError);
      resolve({ server, close });
    });
  });
}

function serveConnection(sock: Socket, handle: PacketHandler, onError: (e: unknown) => void, limits: TcpLimits): void {
  let buf: Buffer = Buffer.alloc(0);
  let pending = 0;
  let closed = false;
  sock.setNoDelay(true);
  sock.setTimeout(limits.idleMs, () => sock.destroy());
  sock.on("error", () => sock.destroy());
  sock.on("close", () => (closed = true));
  sock.on("data", (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) break;
      const msg = buf.subarray(2, 2 + len);
      buf = buf.subarray(2 + len);
      pending++;
      if (pending >= limits.maxPipelined) sock.pause();
      Promise.resolve()
        .then(() => handle(Buffer.from(msg), "tcp", sock.remoteAddress ?? ""))
        .then((reply) => {
          if (!reply || closed) return;
          const framed = Buffer.alloc(2 + reply.length);
          framed.writeUInt16BE(reply.length, 0);
          reply.copy(framed, 2);
          sock.write(framed);
        })
        .catch(onError)
        .finally(() => {
          pending--;
          if (pending < limits.maxPipelined && !closed) sock.resume();
        });
    }
  });
}
