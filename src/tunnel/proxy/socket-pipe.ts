// Joins two TCP sockets (client ↔ local backend): backpressure both ways,
// half-close passed on (EOF on one side ends the other's write side), and a
// reset on one side resets the other instead of leaving it hanging.
import type { ByteSocket as Socket } from "../../net/byte-socket.ts";
import { resetSocket } from "./pipe.ts";

export interface SocketPipeResult {
  bytesUp: number;
  bytesDown: number;
}

export function pipeSockets(client: Socket, backend: Socket, onBytes?: (dir: "up" | "down", n: number) => void): Promise<SocketPipeResult> {
  client.allowHalfOpen = true;
  backend.allowHalfOpen = true;
  const res: SocketPipeResult = { bytesUp: 0, bytesDown: 0 };
  return new Promise((resolve) => {
    let ended = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve(res);
    };
    const one = (from: Socket, to: Socket, dir: "up" | "down") => {
      from.on("data", (d: Buffer) => {
        if (dir === "up") res.bytesUp += d.length;
        else res.bytesDown += d.length;
        onBytes?.(dir, d.length);
        if (!to.write(d)) {
          from.pause();
          to.once("drain", () => from.resume());
        }
      });
      from.on("end", () => {
        to.end();
        if (++ended === 2) finish();
      });
      from.on("error", (err) => {
        resetSocket(to, err);
        from.destroy();
        finish();
      });
      from.on("close", (hadError) => {
        if (hadError) resetSocket(to);
        if (client.destroyed && backend.destroyed) finish();
      });
    };
    one(client, backend, "up");
    one(backend, client, "down");
    // an EOF that came while the caller was still connecting
    for (const [from, to] of [[client, backend], [backend, client]] as const) {
      if (from.readableEnded) {
        to.end();
        ended++;
      }
    }
    if (ended === 2) finish();
    // callers may hand over paused sockets (so nothing was read too early)
    client.resume();
    backend.resume();
  });
}
