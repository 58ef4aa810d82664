// A Service and its Endpoints as the controller publishes them, for unit
// tests: defaults of a plain ClusterIP service, anything overridable.
import type { Endpoint, Service } from "../../src/model/index.ts";

export function endpoint(ip: string, nodeName = "n", ready = true): Endpoint {
  return { ip, nodeName, ready, hostname: "", ports: [] };
}

export function service(overrides: Partial<Service> = {}): Service {
  return {
    namespace: "demo",
    name: "web",
    type: "ClusterIP",
    clusterIPs: ["10.96.0.1"],
    headless: false,
    externalName: "",
    ports: [{ name: "", port: 80, protocol: "TCP", targetPort: 8080 }],
    endpoints: [],
    sessionAffinity: "None",
    sessionAffinityTimeoutSeconds: 10800,
    lbPolicy: "RoundRobin",
    ...overrides,
  };
}
