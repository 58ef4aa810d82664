import { describe, expect, test } from "bun:test";
import { buildServices, endpointsFromEndpoints, endpointsFromSlices, nodeFrom, serviceFrom, PROXY_NAME_LABEL } from "../src/agent/controller/convert.ts";
import { staticServices } from "../src/agent/controller/static-source.ts";
import type { KubeObject } from "../src/kube/reflector.ts";
import { targetPortFor } from "../src/model/index.ts";

const svc = (name: string, spec: Record<string, unknown>, meta: Record<string, unknown> = {}): KubeObject => ({
  metadata: { name, namespace: "demo", ...meta },
  spec,
});
const slice = (svcName: string, name: string, endpoints: unknown[], ports: unknown[] = [{ name: "http", port: 8080, protocol: "TCP" }]): KubeObject => ({
  metadata: { name, namespace: "demo", labels: { "kubernetes.io/service-name": svcName } },
  addressType: "IPv4",
  endpoints,
  ports,
});

describe("Service conversion", () => {
  test("ClusterIP service with ports, affinity and lb-policy annotation", () => {
    const s = serviceFrom(
      svc(
        "web",
        {
          clusterIP: "10.96.0.10",
          clusterIPs: ["10.96.0.10"],
          ports: [
            { name: "http", port: 80, targetPort: "http", protocol: "TCP" },
            { name: "dns", port: 53, targetPort: 5353, protocol: "UDP" },
            { name: "sctp", port: 9, protocol: "SCTP" },
          ],
          sessionAffinity: "ClientIP",
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
        },
        { annotations: { "edgemesh.io/lb-policy": "ConsistentHash" } },
      ),
    );
    expect(s).toMatchObject({
      namespace: "demo",
      name: "web",
      type: "ClusterIP",
      clusterIPs: ["10.96.0.10"],
      headless: false,
      ports: [
        { name: "http", port: 80, protocol: "TCP", targetPort: "http" },
        { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 },
      ],
      sessionAffinity: "ClientIP",
      sessionAffinityTimeoutSeconds: 60,
      lbPolicy: "ConsistentHash",
    });
  });

  test("defaults: targetPort = port, protocol TCP, affinity timeout 10800, RoundRobin for an unknown policy", () => {
    const s = serviceFrom(svc("a", { clusterIP: "10.96.0.11", ports: [{ port: 8080 }] }, { annotations: { "edgemesh.io/lb-policy": "Bogus" } }))!;
    expect(s.ports).toEqual([{ name: "", port: 8080, protocol: "TCP", targetPort: 8080 }]);
    expect(s.sessionAffinityTimeoutSeconds).toBe(10800);
    expect(s.lbPolicy).toBe("RoundRobin");
  });

  test("headless and ExternalName are kept (for DNS); proxy-name labelled services are skipped", () => {
    expect(serviceFrom(svc("h", { clusterIP: "None" }))).toMatchObject({ headless: true, clusterIPs: [] });
    expect(serviceFrom(svc("x", { type: "ExternalName", externalName: "db.example.com" }))).toMatchObject({ type: "ExternalName", externalName: "db.example.com", headless: false });
    expect(serviceFrom(svc("skip", { clusterIP: "10.96.0.12" }, { labels: { [PROXY_NAME_LABEL]: "other" } }))).toBeUndefined();
  });
});

describe("endpoints", () => {
  test("slices of one service merge; only ready endpoints; nodeName and hostname kept; duplicates once", () => {
    const eps = endpointsFromSlices([
      slice("web", "web-a", [
        { addresses: ["10.0.0.1"], conditions: { ready: true }, nodeName: "edge1", hostname: "web-0" },
        { addresses: ["10.0.0.2"], conditions: { ready: false }, nodeName: "edge2" },
        { addresses: ["10.0.0.3"], nodeName: "edge3" },
      ]),
      slice("web", "web-b", [{ addresses: ["10.0.0.4", "10.0.0.1"], conditions: { ready: true }, nodeName: "edge2" }]),
    ]);
    expect(eps.map((e) => [e.ip, e.nodeName, e.hostname])).toEqual([
      ["10.0.0.1", "edge1", "web-0"],
      ["10.0.0.3", "edge3", ""],
      ["10.0.0.4", "edge2", ""],
    ]);
    expect(eps[0]!.ports).toEqual([{ name: "http", port: 8080, protocol: "TCP" }]);
  });

  test("v1 Endpoints: addresses are ready, notReadyAddresses are not", () => {
    const eps = endpointsFromEndpoints({
      metadata: { name: "web", namespace: "demo" },
      subsets: [{ addresses: [{ ip: "10.0.0.1", nodeName: "edge1" }], notReadyAddresses: [{ ip: "10.0.0.9" }], ports: [{ name: "http", port: 8080 }] }],
    });
    expect(eps).toEqual([{ ip: "10.0.0.1", nodeName: "edge1", ready: true, hostname: "", ports: [{ name: "http", port: 8080, protocol: "TCP" }] }]);
  });

  test("a named targetPort resolves per endpoint through its ports", () => {
    const [s] = buildServices({
      services: [svc("web", { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }] })],
      slices: [slice("web", "a", [{ addresses: ["10.0.0.1"] }], [{ name: "http", port: 8080 }]), slice("web", "b", [{ addresses: ["10.0.0.2"] }], [{ name: "http", port: 9090 }])],
    });
    expect(s!.endpoints.map((e) => targetPortFor(s!.ports[0]!, e))).toEqual([8080, 9090]);
  });

  test("an Istio DestinationRule of the same namespace/name sets the policy; the Service's annotation wins over it", () => {
    const dr = (name: string, loadBalancer: unknown, ns = "demo") => ({ metadata: { name, namespace: ns }, spec: { host: name, trafficPolicy: { loadBalancer } } });
    const list = buildServices({
      services: [
        svc("hash", { clusterIP: "10.96.0.1" }),
        svc("rand", { clusterIP: "10.96.0.2" }),
        svc("annotated", { clusterIP: "10.96.0.3" }, { annotations: { "edgemesh.io/lb-policy": "Random" } }),
        svc("leastreq", { clusterIP: "10.96.0.4" }),
        svc("other-ns", { clusterIP: "10.96.0.5" }),
      ],
      slices: [],
      destinationRules: [
        dr("hash", { consistentHash: { useSourceIp: true } }),
        dr("rand", { simple: "RANDOM" }),
        dr("annotated", { consistentHash: { httpHeaderName: "x-user" } }),
        dr("leastreq", { simple: "LEAST_REQUEST" }),
        dr("other-ns", { simple: "RANDOM" }, "elsewhere"),
      ],
    });
    expect(Object.fromEntries(list.map((s) => [s.name, s.lbPolicy]))).toEqual({
      annotated: "Random",
      hash: "ConsistentHash",
      leastreq: "RoundRobin",
      "other-ns": "RoundRobin",
      rand: "Random",
    });
  });

  test("a snapshot has every service with its own endpoints, sorted", () => {
    const list = buildServices({
      services: [svc("b", { clusterIP: "10.96.0.2" }), svc("a", { clusterIP: "10.96.0.1" }), { metadata: { name: "z", namespace: "aaa" }, spec: { clusterIP: "10.96.0.3" } }],
      slices: [slice("a", "a-1", [{ addresses: ["10.0.0.1"] }]), slice("b", "b-1", [{ addresses: ["10.0.0.2"] }])],
    });
    expect(list.map((s) => `${s.namespace}/${s.name}:${s.endpoints.map((e) => e.ip).join(",")}`)).toEqual(["aaa/z:", "demo/a:10.0.0.1", "demo/b:10.0.0.2"]);
  });
});

test("Node addresses: InternalIP first, then ExternalIP", () => {
  expect(
    nodeFrom({ metadata: { name: "edge1" }, status: { addresses: [{ type: "Hostname", address: "edge1" }, { type: "ExternalIP", address: "203.0.113.5" }, { type: "InternalIP", address: "10.0.0.5" }] } }),
  ).toEqual({ name: "edge1", addresses: ["10.0.0.5", "203.0.113.5"], podCIDRs: [] });
});

test("Node pod CIDRs: spec.podCIDRs, else the older spec.podCIDR; a malformed one rejects the node alone", async () => {
  const { nodeSchema } = await import("../src/agent/controller/objects.ts");
  expect(nodeFrom({ metadata: { name: "a" }, spec: { podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"] } }).podCIDRs).toEqual(["10.244.1.0/24", "fd00:10:244:1::/64"]);
  expect(nodeFrom({ metadata: { name: "a" }, spec: { podCIDR: "10.244.2.0/24" } }).podCIDRs).toEqual(["10.244.2.0/24"]);
  expect(nodeSchema.safeParse({ metadata: { name: "a" }, spec: { podCIDRs: ["10.244.1.0/24"] } }).success).toBe(true);
  for (const bad of ["10.244.1.1/24", "10.244.1.0/24; ip link del eth0", "0.0.0.0/0/0"]) expect(nodeSchema.safeParse({ metadata: { name: "a" }, spec: { podCIDRs: [bad] } }).success).toBe(false);
});

test("the static source produces the same model", () => {
  const [s] = staticServices([
    {
      name: "echo",
      namespace: "demo",
      clusterIP: "10.96.10.10",
      type: "ClusterIP",
      externalName: "",
      ports: [{ name: "tcp", port: 9000, targetPort: undefined, protocol: "TCP" }],
      endpoints: [
        { ip: "10.10.2.12", nodeName: "edge2", hostname: "", ready: true, ports: [] },
        { ip: "10.10.2.13", nodeName: "edge2", hostname: "", ready: false, ports: [] },
      ],
      sessionAffinity: "None",
      sessionAffinityTimeoutSeconds: 10800,
      lbPolicy: "Random",
    },
  ]);
  expect(s).toEqual({
    namespace: "demo",
    name: "echo",
    type: "ClusterIP",
    clusterIPs: ["10.96.10.10"],
    headless: false,
    externalName: "",
    ports: [{ name: "tcp", port: 9000, protocol: "TCP", targetPort: 9000 }],
    endpoints: [{ ip: "10.10.2.12", nodeName: "edge2", ready: true, hostname: "", ports: [] }],
    sessionAffinity: "None",
    sessionAffinityTimeoutSeconds: 10800,
    lbPolicy: "Random",
  });
});
