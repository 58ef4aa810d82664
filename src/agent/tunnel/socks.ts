// The SOCKS5 front door (agent.socks5): CONNECT to a node name reaches that
// node's own host through the tunnel, as upstream uses it for `ssh` to edge
// nodes. IP targets and service names come with the proxier; until then they
// get a clear SOCKS error.
import type { Logger } from "../../log.ts";
import type { TunnelAccess } from "../../model/tunnel.ts";
import { parseHostPort } from "../../config/net.ts";
import { startSocks5 } from "../../tunnel/socks5/server.ts";

export interface SocksFrontDoor {
  port: number;
  stop(): Promise<void>;
}

const HOST_UNREACHABLE = 0x04;
const NOT_ALLOWED = 0x02;

export async function startSocksFrontDoor(
  listen: string,
  tunnel: TunnelAccess,
  isKnownNode: (name: string) => boolean,
  selfName: string,
  log: Logger,
): Promise<SocksFrontDoor> {
  const hp = parseHostPort(listen);
  if (!hp) throw new Error(`agent.socks5.listen: expected host:port, got ${JSON.stringify(listen)}`);
  const server = await startSocks5({
    host: hp.host,
    port: hp.port,
    log,
    route: async (target) => {
      const name = target.host.toLowerCase().replace(/\.$/, "");
      if (target.atyp !== "domain") {
        return { kind: "error", reply: NOT_ALLOWED, reason: `IP targets are not routed yet (only node names): ${target.host}` };
      }
      if (name === selfName) {
        return { kind: "error", reply: NOT_ALLOWED, reason: `${name} is this node; connect to it directly` };
      }
      if (!isKnownNode(name)) {
        return { kind: "error", reply: HOST_UNREACHABLE, reason: `unknown node ${name}` };
      }
      // the remote agent dials the port on its own host
      return { kind: "stream", open: () => tunnel.open(name, { protocol: "tcp", host: "127.0.0.1", port: target.port }) };
    },
  });
  log.info("socks5 front door listening", { address: `${hp.host}:${server.port}` });
  return server;
}
