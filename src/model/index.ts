// The shared model: what the controller publishes and the proxier, DNS and
// traffic modules consume. Plain data only, so the decisions made from it can
// be pure functions tested without sockets.
export type Protocol = "TCP" | "UDP";
export type LbPolicy = "RoundRobin" | "Random" | "ConsistentHash";

export interface ServicePort {
  name: string;
  port: number;
  protocol: Protocol;
  /** number, or a named container port resolved per endpoint */
  targetPort: number | string;
}

export interface EndpointPort {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface Endpoint {
  ip: string;
  nodeName: string;
  ready: boolean;
  hostname: string;
  ports: EndpointPort[];
}

export interface Service {
  namespace: string;
  name: string;
  type: "ClusterIP" | "ExternalName";
  /** empty for headless services */
  clusterIPs: string[];
  headless: boolean;
  externalName: string;
  ports: ServicePort[];
  endpoints: Endpoint[];
  sessionAffinity: "None" | "ClientIP";
  sessionAffinityTimeoutSeconds: number;
  lbPolicy: LbPolicy;
}

export interface Node {
  name: string;
  addresses: string[];
  /** pod CIDRs the node's pods take addresses from (Node.spec.podCIDRs, or a static node's `podCIDRs`) */
  podCIDRs: string[];
}

/** A complete table, never a diff: a subscriber that missed one cannot drift. */
export interface ServiceSnapshot {
  services: Service[];
  /** bumps on every publication */
  generation: number;
}

export interface NodeSnapshot {
  nodes: Node[];
  generation: number;
}

export function serviceKey(s: { namespace: string; name: string }): string {
  return `${s.namespace}/${s.name}`;
}

/** Resolves a service port's target for one endpoint; undefined when a named port is missing there. */
export function targetPortFor(port: ServicePort, ep: Endpoint): number | undefined {
  if (typeof port.targetPort === "number") return port.targetPort;
  const named = ep.ports.find((p) => p.name === port.targetPort && p.protocol === port.protocol);
  return named?.port;
}
