// Kubernetes objects → the shared model. Pure functions: a snapshot is a
// function of the cached objects, so it can be rebuilt whole after any change
// and tested without an apiserver.
import type { Endpoint, EndpointPort, LbPolicy, Node, Protocol, Service, ServicePort } from "../../model/index.ts";
import type { KubeObject } from "../../kube/reflector.ts";
import { LB_POLICY_ANNOTATION, PROXY_NAME_LABEL, SERVICE_NAME_LABEL } from "./objects.ts";

// The objects come validated by their kind's schema (objects.ts): upstream
// EdgeMesh skips services that name another proxy (PROXY_NAME_LABEL).
export { LB_POLICY_ANNOTATION, PROXY_NAME_LABEL, SERVICE_NAME_LABEL };
const LB_POLICIES: LbPolicy[] = ["RoundRobin", "Random", "ConsistentHash"];
const DEFAULT_AFFINITY_TIMEOUT = 10800;

type Any = Record<string, any>;

function protocol(p: unknown): Protocol | undefined {
  if (p === undefined || p === null || p === "TCP") return "TCP";
  if (p === "UDP") return "UDP";
  return undefined; // SCTP: not proxied
}

/** the policy named by the Service's annotation; undefined when absent or unknown */
export function lbPolicyOf(annotations: Record<string, string> | undefined): LbPolicy | undefined {
  const v = annotations?.[LB_POLICY_ANNOTATION];
  return (LB_POLICIES as string[]).includes(v ?? "") ? (v as LbPolicy) : undefined;
}

/**
 * An Istio DestinationRule's trafficPolicy.loadBalancer → our policy, as
 * upstream EdgeMesh reads it: `simple` ROUND_ROBIN / RANDOM, or any
 * `consistentHash` (we hash the client IP whatever key it names: the proxy sees
 * TCP, not HTTP headers or cookies). LEAST_REQUEST and others: undefined.
 */
export function lbPolicyFromDestinationRule(dr: KubeObject): LbPolicy | undefined {
  const lb = ((dr.spec as Any)?.trafficPolicy as Any)?.loadBalancer as Any | undefined;
  if (!lb || typeof lb !== "object") return undefined;
  if (lb.consistentHash && typeof lb.consistentHash === "object") return "ConsistentHash";
  if (lb.simple === "ROUND_ROBIN") return "RoundRobin";
  if (lb.simple === "RANDOM") return "Random";
  return undefined;
}

/** a Service object → model without endpoints; undefined when we skip it */
export function serviceFrom(o: KubeObject): Omit<Service, "endpoints"> | undefined {
  const spec = (o.spec ?? {}) as Any;
  if (o.metadata.labels?.[PROXY_NAME_LABEL]) return undefined;
  const isExternal = spec.type === "ExternalName";
  const ips: string[] = Array.isArray(spec.clusterIPs) && spec.clusterIPs.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  const headless = !isExternal && (ips.length === 0 || ips[0] === "None");
  const ports: ServicePort[] = [];
  for (const p of (spec.ports ?? []) as Any[]) {
    const proto = protocol(p.protocol);
    if (!proto || typeof p.port !== "number") continue;
    const target = p.targetPort ?? p.port;
    ports.push({ name: String(p.name ?? ""), port: p.port, protocol: proto, targetPort: typeof target === "number" || typeof target === "string" ? target : p.port });
  }
  return {
    namespace: o.metadata.namespace ?? "default",
    name: o.metadata.name,
    type: isExternal ? "ExternalName" : "ClusterIP",
    clusterIPs: headless || isExternal ? [] : ips.filter((ip) => ip && ip !== "None"),
    headless,
    externalName: isExternal ? String(spec.externalName ?? "") : "",
    ports,
    sessionAffinity: spec.sessionAffinity === "ClientIP" ? "ClientIP" : "None",
    sessionAffinityTimeoutSeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT,
    lbPolicy: lbPolicyOf(o.metadata.annotations) ?? "RoundRobin",
  };
}

function endpointPorts(ports: Any[] | undefined): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const p of ports ?? []) {
    const proto = protocol(p.protocol);
    if (proto && typeof p.port === "number") out.push({ name: String(p.name ?? ""), port: p.port, protocol: proto });
  }
  return out;
}

/** ready endpoints of one service, merged over its EndpointSlices (deduplicated by IP) */
export function endpointsFromSlices(slices: KubeObject[]): Endpoint[] {
  const byIp = new Map<string, Endpoint>();
  for (const s of slices) {
    if (s.addressType === "FQDN") continue;
    const ports = endpointPorts(s.ports as Any[]);
    for (const e of (s.endpoints ?? []) as Any[]) {
      // conditions.ready unset means ready (API contract)
      if (e.conditions?.ready === false) continue;
      for (const ip of (e.addresses ?? []) as string[]) {
        if (byIp.has(ip)) continue;
        byIp.set(ip, { ip, nodeName: String(e.nodeName ?? ""), ready: true, hostname: String(e.hostname ?? ""), ports });
      }
    }
  }
  return [...byIp.values()];
}

/** ready endpoints from a v1 Endpoints object (clusters without EndpointSlices) */
export function endpointsFromEndpoints(o: KubeObject | undefined): Endpoint[] {
  const out: Endpoint[] = [];
  for (const subset of ((o?.subsets ?? []) as Any[])) {
    const ports = endpointPorts(subset.ports);
    for (const a of (subset.addresses ?? []) as Any[]) {
      if (typeof a.ip !== "string") continue;
      out.push({ ip: a.ip, nodeName: String(a.nodeName ?? ""), ready: true, hostname: String(a.hostname ?? ""), ports });
    }
  }
  return out;
}

export function nodeFrom(o: KubeObject): Node {
  const addrs = ((o.status as Any)?.addresses ?? []) as Any[];
  const pick = (t: string) => addrs.filter((a) => a.type === t && typeof a.address === "string").map((a) => a.address as string);
  const spec = (o.spec ?? {}) as Any;
  const cidrs: string[] = Array.isArray(spec.podCIDRs) && spec.podCIDRs.length ? spec.podCIDRs : typeof spec.podCIDR === "string" ? [spec.podCIDR] : [];
  return { name: o.metadata.name, addresses: [...pick("InternalIP"), ...pick("ExternalIP")], podCIDRs: [...cidrs] };
}

export interface KubeState {
  services: Iterable<KubeObject>;
  /** EndpointSlices, or undefined when the cluster serves only v1 Endpoints */
  slices?: Iterable<KubeObject>;
  endpoints?: Iterable<KubeObject>;
  /** Istio DestinationRules, when that CRD is served */
  destinationRules?: Iterable<KubeObject>;
}

/** the complete service table, sorted for stable output */
export function buildServices(st: KubeState): Service[] {
  const slicesBySvc = new Map<string, KubeObject[]>();
  for (const s of st.slices ?? []) {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const key = `${s.metadata.namespace ?? "default"}/${svc}`;
    const list = slicesBySvc.get(key) ?? [];
    list.push(s);
    slicesBySvc.set(key, list);
  }
  const epByKey = new Map<string, KubeObject>();
  for (const e of st.endpoints ?? []) epByKey.set(`${e.metadata.namespace ?? "default"}/${e.metadata.name}`, e);
  // A DestinationRule applies to the Service of the same namespace/name
  // (upstream EdgeMesh's rule). The Service's own annotation wins over it.
  const drPolicy = new Map<string, LbPolicy>();
  for (const dr of st.destinationRules ?? []) {
    const p = lbPolicyFromDestinationRule(dr);
    if (p) drPolicy.set(`${dr.metadata.namespace ?? "default"}/${dr.metadata.name}`, p);
  }
  const out: Service[] = [];
  for (const o of st.services) {
    const base = serviceFrom(o);
    if (!base) continue;
    const key = `${base.namespace}/${base.name}`;
    if (!lbPolicyOf(o.metadata.annotations)) base.lbPolicy = drPolicy.get(key) ?? "RoundRobin";
    const endpoints = base.type === "ExternalName" ? [] : st.slices ? endpointsFromSlices(slicesBySvc.get(key) ?? []) : endpointsFromEndpoints(epByKey.get(key));
    out.push({ ...base, endpoints });
  }
  return out.sort((a, b) => (a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace)));
}
