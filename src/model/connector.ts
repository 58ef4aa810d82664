// What the traffic module offers the SOCKS5 front door (via the bus): find a
// service by name or ClusterIP, and connect to one of its backends with the
// service's policy, exactly as intercepted traffic would.
import type { ByteSocket as Socket } from "../net/byte-socket.ts";
import type { Endpoint, Service, ServicePort } from "./index.ts";
import type { EarlyBytes, TunnelChannel } from "./tunnel.ts";

export type Upstream = { kind: "socket"; socket: Socket; endpoint: Endpoint } | { kind: "tunnel"; channel: TunnelChannel; endpoint: Endpoint };

export interface ServiceTarget {
  service: Service;
  port: ServicePort;
}

export interface ServiceConnector {
  /** `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<zone>` or a ClusterIP, with a TCP service port */
  resolve(host: string, port: number): ServiceTarget | undefined;
  /** `early`: the client's bytes while backends are asked (see traffic/connect.ts) */
  connect(service: Service, port: ServicePort, clientIp: string, early?: EarlyBytes): Promise<Upstream>;
}
