// The /status document (DESIGN §9). Later modules fill their parts; the
// shape is fixed here so `edgemesh status` and tests can rely on it.
export interface ServerStatus {
  address: string;
  connected: boolean;
  reservation: boolean;
  /** why the last connect or reservation failed, while it keeps failing */
  error?: string;
  /** seconds since the server was last usable, while it keeps failing */
  downS?: number;
  /** what answered: a tunnel server or a relay agent (agents only) */
  kind?: "server" | "relay";
  rttMs?: number;
}

export interface PeerStatus {
  nodeName: string;
  peerId: string;
  path: "direct" | "relayed" | "none";
  rttMs: number | null;
  /** for a relayed peer: why there is no direct path (when the tunnel knows) */
  relayedReason?: string;
  /** identity v2: the peer's verified certificate */
  certificate?: { role: string; daysLeft: number };
}

/** this node's identity: v1 (keys derived from the psk) or v2 (its certificate) */
export type IdentityStatus = { version: 1 } | { version: 2; node: string; role: string; serial: string; notAfter: string; daysLeft: number; revocations: number };

export interface ListenerStatus {
  service: string;
  protocol: string;
  address: string;
  /** ready endpoints per node name ("(direct)" for endpoints without one) */
  endpointsByNode?: Record<string, number>;
}

/** agent.podNetwork (src/agent/podnet) */
export interface PodNetworkStatus {
  device: string;
  mtu: number;
  ownCIDRs: string[];
  routes: Array<{ cidr: string; node: string }>;
  refused: Array<{ node: string; cidr: string; reason: string }>;
  /** the datagram lane's UDP port, null when the lane is off; `public`: its address as a tunnel server saw it */
  lane?: { port: number; public?: string } | null;
  /** packetsOut/In: on tunnel streams; lanePacketsOut/In: as lane datagrams */
  peers: Array<{ node: string; path: string; packetsOut: number; bytesOut: number; packetsIn: number; bytesIn: number; lane?: "up" | "probing" | "-"; lanePacketsOut?: number; lanePacketsIn?: number }>;
  dropped: Record<string, number>;
}

export interface StatusDoc {
  role: "agent" | "server";
  nodeName: string;
  version: string;
  peerId: string;
  uptimeSeconds: number;
  ready: boolean;
  modules: Array<{ name: string; state: string; ready: boolean }>;
  servers: ServerStatus[];
  peers: PeerStatus[];
  /** number of services in the current snapshot */
  services: number;
  listeners: ListenerStatus[];
  [extra: string]: unknown;
}

export function emptyStatus(role: "agent" | "server", nodeName: string, version: string): StatusDoc {
  return {
    role,
    nodeName,
    version,
    peerId: "",
    uptimeSeconds: 0,
    ready: false,
    modules: [],
    servers: [],
    peers: [],
    services: 0,
    listeners: [],
  };
}
