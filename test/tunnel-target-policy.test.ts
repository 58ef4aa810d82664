// What a member may have this agent dial (least privilege between members).
import { expect, test } from "bun:test";
import { TargetPolicy } from "../src/agent/tunnel/target-policy.ts";
import type { Service } from "../src/model/index.ts";

const svc = (name: string, endpoints: Service["endpoints"], ports: Service["ports"]): Service => ({
  namespace: "demo",
  name,
  type: "ClusterIP",
  clusterIPs: ["10.96.0.1"],
  headless: false,
  externalName: "",
  ports,
  endpoints,
  sessionAffinity: "None",
  sessionAffinityTimeoutSeconds: 10800,
  lbPolicy: "RoundRobin",
});

test("only this node's endpoints of known services, at their target ports and protocols, and the listed node ports", () => {
  const p = new TargetPolicy("edge2", [22]);
  const ep = (ip: string, nodeName: string) => ({ ip, nodeName, ready: true, hostname: "", ports: [{ name: "http", port: 8080, protocol: "TCP" as const }] });
  p.update([
    svc("web", [ep("10.1.0.5", "edge2"), ep("10.1.0.6", "edge1")], [{ name: "http", port: 80, protocol: "TCP", targetPort: "http" }]),
    svc("dns", [ep("10.1.0.7", "edge2")], [{ name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }]),
  ]);
  expect(p.check({ protocol: "tcp", host: "10.1.0.5", port: 8080 })).toBeUndefined();
  expect(p.check({ protocol: "udp", host: "10.1.0.7", port: 5353 })).toBeUndefined();
  expect(p.check({ protocol: "tcp", host: "127.0.0.1", port: 22 })).toBeUndefined();
  // another node's endpoint, a wrong port or protocol, loopback, metadata, the LAN
  expect(p.check({ protocol: "tcp", host: "10.1.0.6", port: 8080 })).toContain("not an endpoint of a known service on node edge2");
  expect(p.check({ protocol: "tcp", host: "10.1.0.5", port: 8081 })).toContain("not an endpoint");
  expect(p.check({ protocol: "tcp", host: "10.1.0.7", port: 5353 })).toContain("not an endpoint");
  expect(p.check({ protocol: "tcp", host: "127.0.0.1", port: 10556 })).toBe("port 10556 of node edge2 is not open to the mesh (agent.socks5.nodePorts)");
  expect(p.check({ protocol: "tcp", host: "169.254.169.254", port: 80 })).toContain("not an endpoint");
  expect(p.check({ protocol: "tcp", host: "localhost", port: 22 })).toContain("not an endpoint");
  // a service that goes away takes its endpoints with it
  p.update([]);
  expect(p.check({ protocol: "tcp", host: "10.1.0.5", port: 8080 })).toContain("not an endpoint");
});
