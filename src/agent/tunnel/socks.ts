// The SOCKS5 front door (agent.socks5), for users without root or iptables:
// - a service name (svc.ns, svc.ns.svc, svc.ns.svc.<zone>) or a ClusterIP
//   reaches one of the service's backends, chosen exactly as intercepted
//   traffic would be (the traffic module's connector);
// - a node name reaches that node's own host through the tunnel, as
//   upstream uses it for `ssh` to edge nodes.
import type { Logger } from "../../log.ts";
import type { TunnelAccess } from "../../model/tunnel.ts";
import type { ServiceConnector } from "../../model/connector.ts";
import { parseHostPort } from "../../config/net.ts";
import { startSocks5, type Socks5Route } from "../../tunnel/socks5/server.ts";

export interface SocksFrontDoor {
  port: number;
  /** clients connected now */
  readonly connections: number;
  stop(): Promise<void>;
}

export interface SocksLimits {
  credentials?: { username: Uint8Array; password: Uint8Array };
  maxConnections: number;
  onRefused(why: "capacity" | "credentials"): void;
}

const GENERAL_FAILURE = 0x01;
const NOT_ALLOWED = 0x02;
const HOST_UNREACHABLE = 0x04;

export interface SocksRouting {
  tunnel: TunnelAccess;
  connector: () => ServiceConnector | undefined;
  isKnownNode: (name: string) => boolean;
  selfName: string;
}

export async function startSocksFrontDoor(listen: string, r: SocksRouting, log: Logger, limits: SocksLimits): Promise<SocksFrontDoor> {
  const hp = parseHostPort(listen);
  if (!hp) throw new Error(`agent.socks5.listen: expected host:port, got ${JSON.stringify(listen)}`);
  const server = await startSocks5({
    host: hp.host,
    port: hp.port,
    log,
    ...(limits.credentials ? { credentials: limits.credentials } : {}),
    maxConnections: limits.maxConnections,
    onRefused: limits.onRefused,
    route: async (target): Promise<Socks5Route> => {
      const name = target.host.toLowerCase().replace(/\.$/, "");
      const connector = r.connector();
      const svc = connector?.resolve(name, target.port);
      if (svc && connector) {
        try {
          const up = await connector.connect(svc.service, svc.port, "127.0.0.1");
          if (up.kind === "socket") return { kind: "socket", open: async () => up.socket };
          return { kind: "stream", open: async () => up.channel };
        } catch (e) {
          return { kind: "error", reply: GENERAL_FAILURE, reason: `${svc.service.namespace}/${svc.service.name}: ${(e as Error).message}` };
        }
      }
      if (target.atyp !== "domain") {
        return { kind: "error", reply: NOT_ALLOWED, reason: `${target.host}:${target.port} is not a service ClusterIP:port` };
      }
      if (name === r.selfName) {
        return { kind: "error", reply: NOT_ALLOWED, reason: `${name} is this node; connect to it directly` };
      }
      if (!r.isKnownNode(name)) {
        return { kind: "error", reply: HOST_UNREACHABLE, reason: `unknown node or service ${name}:${target.port}` };
      }
      // the remote agent dials the port on its own host
      return { kind: "stream", open: () => r.tunnel.open(name, { protocol: "tcp", host: "127.0.0.1", port: target.port }) };
    },
  });
  log.info("socks5 front door listening", { address: `${hp.host}:${server.port}`, auth: limits.credentials ? "username/password" : "none", maxConnections: limits.maxConnections });
  return server;
}
