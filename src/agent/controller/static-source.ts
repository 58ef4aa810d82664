// The Kubernetes-free source: services and nodes listed in the config file.
// Same model, same snapshot as the Kubernetes source.
import type { Node, Service } from "../../model/index.ts";
import type { StaticNode, StaticService } from "../../config/schema.ts";

export function staticServices(list: StaticService[]): Service[] {
  return list
    .map((s): Service => {
      const headless = s.clusterIP === "None";
      const external = s.type === "ExternalName";
      return {
        namespace: s.namespace,
        name: s.name,
        type: s.type,
        clusterIPs: headless || external ? [] : [s.clusterIP],
        headless: headless && !external,
        externalName: s.externalName,
        ports: s.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, targetPort: p.targetPort ?? p.port })),
        endpoints: external
          ? []
          : s.endpoints.filter((e) => e.ready).map((e) => ({ ip: e.ip, nodeName: e.nodeName, ready: true, hostname: e.hostname, ports: e.ports })),
        sessionAffinity: s.sessionAffinity,
        sessionAffinityTimeoutSeconds: s.sessionAffinityTimeoutSeconds,
        lbPolicy: s.lbPolicy,
      };
    })
    .sort((a, b) => (a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace)));
}

export function staticNodes(list: StaticNode[]): Node[] {
  return list.map((n) => ({ name: n.name, addresses: [...n.addresses], podCIDRs: [...n.podCIDRs] }));
}
