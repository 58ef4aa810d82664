import { expect, test } from "bun:test";
import { resolveTarget } from "../src/agent/traffic/resolve.ts";
import type { Service } from "../src/model/index.ts";

const svc = (name: string, ns: string, ip: string, extra: Partial<Service> = {}): Service => ({
  namespace: ns,
  name,
  type: "ClusterIP",
  clusterIPs: ip ? [ip] : [],
  headless: !ip,
  externalName: "",
  ports: [
    { name: "http", port: 80, protocol: "TCP", targetPort: 8080 },
    { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
  ],
  endpoints: [],
  sessionAffinity: "None",
  sessionAffinityTimeoutSeconds: 10800,
  lbPolicy: "RoundRobin",
  ...extra,
});
const services = [svc("echo", "demo", "10.96.10.10"), svc("db", "demo", ""), svc("echo", "other", "10.96.10.11")];

test("names an application uses, and ClusterIPs, resolve to the service port", () => {
  for (const h of ["echo.demo", "echo.demo.svc", "echo.demo.svc.cluster.local", "ECHO.Demo.svc.cluster.local.", "10.96.10.10"]) {
    const t = resolveTarget(services, h, 80);
    expect(t?.service.namespace).toBe("demo");
    expect(t?.port.targetPort).toBe(8080);
  }
  expect(resolveTarget(services, "echo.other", 80)?.service.clusterIPs).toEqual(["10.96.10.11"]);
  expect(resolveTarget(services, "echo.demo.svc.edge.local", 80, "edge.local")?.service.name).toBe("echo");
});

test("no match: wrong port, UDP-only port, headless, bare name, unknown", () => {
  expect(resolveTarget(services, "echo.demo", 81)).toBeUndefined();
  expect(resolveTarget(services, "echo.demo", 53)).toBeUndefined();
  expect(resolveTarget(services, "db.demo", 80)).toBeUndefined();
  expect(resolveTarget(services, "echo", 80)).toBeUndefined();
  expect(resolveTarget(services, "nope.demo", 80)).toBeUndefined();
  expect(resolveTarget(services, "10.96.99.99", 80)).toBeUndefined();
});
