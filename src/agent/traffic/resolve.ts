// Service lookup by the names an application uses, for the SOCKS5 entry:
// svc.ns, svc.ns.svc, svc.ns.svc.<cluster domain>, or a ClusterIP.
import { isIP } from "node:net";
import type { Service } from "../../model/index.ts";
import type { ServiceTarget } from "../../model/connector.ts";

export function resolveTarget(services: Service[], host: string, port: number, clusterDomain = "cluster.local"): ServiceTarget | undefined {
  const h = host.toLowerCase().replace(/\.$/, "");
  let svc: Service | undefined;
  if (isIP(h)) {
    svc = services.find((s) => s.clusterIPs.includes(h));
  } else {
    const zone = `.svc.${clusterDomain.toLowerCase()}`;
    const base = h.endsWith(zone) ? h.slice(0, -zone.length) : h.endsWith(".svc") ? h.slice(0, -4) : h;
    const parts = base.split(".");
    if (parts.length !== 2) return undefined;
    const [name, ns] = parts as [string, string];
    svc = services.find((s) => s.name === name && s.namespace === ns);
  }
  if (!svc || svc.type !== "ClusterIP" || svc.headless) return undefined;
  const p = svc.ports.find((x) => x.port === port && x.protocol === "TCP");
  return p ? { service: svc, port: p } : undefined;
}
