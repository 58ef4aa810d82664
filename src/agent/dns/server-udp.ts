// The UDP listener: one datagram in, at most one out. Replies are written
// only after the resolver is done, and an error on one packet is logged, never
// thrown out of the socket's handler.
import { createSocket, type Socket } from "node:dgram";
import type { HostPort } from "../../config/net.ts";
import { isIP } from "../../config/net.ts";

/** a reply at once when it is known (the common case: no promise, no extra tick), else later */
export type PacketHandler = (packet: Buffer, transport: "udp" | "tcp", source: string) => Buffer | undefined | Promise<Buffer | undefined>;

export function listenUdp(addr: HostPort, handle: PacketHandler, onError: (e: unknown) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket({ type: isIP(addr.host) === 6 ? "udp6" : "udp4" });
    const failStart = (e: Error) => reject(e);
    sock.once("error", failStart);
    sock.on("message", (msg, rinfo) => {
      const send = (reply: Buffer | undefined) => {
        // send() throws at once on a socket closed meanwhile (the module stopping)
        if (reply) sock.send(reply, rinfo.port, rinfo.address, (e) => e && onError(e));
      };
      try {
        const r = handle(msg, "udp", rinfo.address);
        if (r instanceof Promise) r.then(send).catch(onError);
        else send(r);
      } catch (e) {
        onError(e);
      }
    });
    sock.bind(addr.port, addr.host, () => {
      sock.off("error", failStart);
      sock.on("error", onError);
      resolve(sock);
    });
  });
}
