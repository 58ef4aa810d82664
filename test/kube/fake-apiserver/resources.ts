// The resource types the fake serves: discovery data, field labels, SMP list
// strategies, the columns of server-side Table printing and create-time
// defaulting, mirroring what kube-apiserver does for these kinds.

import { isObj, type Obj, type SmpSchema } from "./patch.ts";

export type ResourceName = "services" | "endpoints" | "endpointslices" | "nodes" | "namespaces" | "destinationrules";

export interface ColumnDefinition {
  name: string;
  type: "string" | "integer" | "date";
  format: string;
  description: string;
  priority: number;
}

export interface ResourceDef {
  name: ResourceName;
  kind: string;
  singular: string;
  group: string;
  version: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  verbs: string[];
  /** Custom resources refuse strategic merge patch, as real CRDs do. */
  custom: boolean;
  /** PUT to a missing name creates it (true for Endpoints in the real apiserver). */
  createOnUpdate: boolean;
  /** Whether metadata.generation is maintained (bumped when anything but metadata/status changes). */
  generation: boolean;
  subresources: string[];
  fieldLabels: string[];
  smp: SmpSchema;
  columns: ColumnDefinition[];
  cells(o: Obj, now: number): unknown[];
}

export const apiVersionOf = (r: ResourceDef): string => (r.group ? `${r.group}/${r.version}` : r.version);

const STD_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const META_SMP: SmpSchema = {
  "metadata.ownerReferences": { mergeKey: "uid" },
  "metadata.finalizers": { primitiveMerge: true },
};

const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v));
const meta = (o: Obj) => obj(o.metadata);

const col = (name: string, type: ColumnDefinition["type"], description: string, priority = 0): ColumnDefinition => ({
  name,
  type,
  format: name === "Name" ? "name" : "",
  description,
  priority,
});

/** kubectl's human duration ("45s", "5m10s", "3h", "12d"). */
export function humanAge(fromIso: unknown, now: number): string {
  const t = Date.parse(str(fromIso));
  if (Number.isNaN(t)) return "<unknown>";
  const s = Math.floor((now - t) / 1000);
  if (s < -1) return "<invalid>";
  if (s < 0) return "0s";
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 192) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 730) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

/** "a,b,c + 2 more..." the way kubectl abbreviates address lists. */
function firstThree(items: string[]): string {
  if (items.length === 0) return "<none>";
  const head = items.slice(0, 3).join(",");
  return items.length > 3 ? `${head} + ${items.length - 3} more...` : head;
}

const nameCol = col("Name", "string", "Name must be unique within a namespace.");
const ageCol = col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.");
const age = (o: Obj, now: number) => humanAge(meta(o).creationTimestamp, now);

function serviceCells(o: Obj, now: number): unknown[] {
  const spec = obj(o.spec);
  const type = str(spec.type) || "ClusterIP";
  let external = "<none>";
  const externalIPs = arr(spec.externalIPs).map(str);
  if (type === "ExternalName") external = str(spec.externalName);
  else if (type === "LoadBalancer") {
    const ingress = arr(obj(obj(o.status).loadBalancer).ingress).map((i) => str(obj(i).ip) || str(obj(i).hostname));
    const all = [...ingress, ...externalIPs];
    external = all.length ? all.join(",") : "<pending>";
  } else if (externalIPs.length) external = externalIPs.join(",");
  const ports = arr(spec.ports).map((p) => {
    const q = obj(p);
    const proto = str(q.protocol) || "TCP";
    return q.nodePort ? `${str(q.port)}:${str(q.nodePort)}/${proto}` : `${str(q.port)}/${proto}`;
  });
  const selector = Object.entries(obj(spec.selector))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${str(v)}`)
    .join(",");
  return [
    str(meta(o).name),
    type,
    str(spec.clusterIP) || "<none>",
    external,
    ports.length ? ports.join(",") : "<none>",
    age(o, now),
    selector || "<none>",
  ];
}

function endpointsCells(o: Obj, now: number): unknown[] {
  const eps: string[] = [];
  for (const s of arr(o.subsets)) {
    const ports = arr(obj(s).ports).map((p) => str(obj(p).port));
    for (const a of arr(obj(s).addresses)) {
      const ip = str(obj(a).ip);
      if (ports.length === 0) eps.push(ip);
      for (const p of ports) eps.push(`${ip}:${p}`);
    }
  }
  return [str(meta(o).name), firstThree(eps), age(o, now)];
}

function sliceCells(o: Obj, now: number): unknown[] {
  const ports = arr(o.ports).map((p) => str(obj(p).port));
  const addrs = arr(o.endpoints).flatMap((e) => arr(obj(e).addresses).map(str));
  return [str(meta(o).name), str(o.addressType), ports.length ? ports.join(",") : "<unset>", firstThree(addrs), age(o, now)];
}

function nodeCells(o: Obj, now: number): unknown[] {
  const status = obj(o.status);
  const ready = arr(status.conditions).map(obj).find((c) => c.type === "Ready");
  let state = ready ? (ready.status === "True" ? "Ready" : ready.status === "False" ? "NotReady" : "Unknown") : "Unknown";
  if (obj(o.spec).unschedulable === true) state += ",SchedulingDisabled";
  const labels = obj(meta(o).labels);
  const roles = Object.keys(labels)
    .filter((k) => k.startsWith("node-role.kubernetes.io/"))
    .map((k) => k.slice("node-role.kubernetes.io/".length))
    .sort();
  const addr = (t: string) => str(arr(status.addresses).map(obj).find((a) => a.type === t)?.address) || "<none>";
  const info = obj(status.nodeInfo);
  return [
    str(meta(o).name),
    state,
    roles.length ? roles.join(",") : "<none>",
    age(o, now),
    str(info.kubeletVersion),
    addr("InternalIP"),
    addr("ExternalIP"),
    str(info.osImage) || "<unknown>",
    str(info.kernelVersion) || "<unknown>",
    str(info.containerRuntimeVersion) || "<unknown>",
  ];
}

export const RESOURCES: Record<ResourceName, ResourceDef> = {
  services: {
    name: "services",
    kind: "Service",
    singular: "service",
    group: "",
    version: "v1",
    namespaced: true,
    shortNames: ["svc"],
    categories: ["all"],
    // Services have no deletecollection in the real API.
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    custom: false,
    createOnUpdate: false,
    generation: false,
    subresources: ["status"],
    fieldLabels: ["metadata.name", "metadata.namespace"],
    smp: {
      ...META_SMP,
      "spec.ports": { mergeKey: "port" },
      "status.conditions": { mergeKey: "type" },
    },
    columns: [
      nameCol,
      col("Type", "string", "type determines how the Service is exposed."),
      col("Cluster-IP", "string", "clusterIP is the IP address of the service."),
      col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic."),
      col("Port(s)", "string", "The list of ports that are exposed by this service."),
      ageCol,
      col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
    ],
    cells: serviceCells,
  },
  endpoints: {
    name: "endpoints",
    kind: "Endpoints",
    singular: "endpoints",
    group: "",
    version: "v1",
    namespaced: true,
    shortNames: ["ep"],
    categories: [],
    verbs: STD_VERBS,
    custom: false,
    createOnUpdate: true,
    generation: false,
    subresources: [],
    fieldLabels: ["metadata.name", "metadata.namespace"],
    smp: META_SMP,
    columns: [nameCol, col("Endpoints", "string", "Endpoints is the list of addresses and ports."), ageCol],
    cells: endpointsCells,
  },
  endpointslices: {
    name: "endpointslices",
    kind: "EndpointSlice",
    singular: "endpointslice",
    group: "discovery.k8s.io",
    version: "v1",
    namespaced: true,
    shortNames: [],
    categories: [],
    verbs: STD_VERBS,
    custom: false,
    createOnUpdate: false,
    generation: true,
    subresources: [],
    fieldLabels: ["metadata.name", "metadata.namespace", "addressType"],
    smp: META_SMP,
    columns: [
      nameCol,
      col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
      col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
      col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
      ageCol,
    ],
    cells: sliceCells,
  },
  nodes: {
    name: "nodes",
    kind: "Node",
    singular: "node",
    group: "",
    version: "v1",
    namespaced: false,
    shortNames: ["no"],
    categories: [],
    verbs: STD_VERBS,
    custom: false,
    createOnUpdate: false,
    generation: false,
    subresources: ["status"],
    fieldLabels: ["metadata.name", "spec.unschedulable"],
    smp: {
      ...META_SMP,
      "spec.podCIDRs": { primitiveMerge: true },
      "spec.taints": { mergeKey: "key" },
      "status.addresses": { mergeKey: "type" },
      "status.conditions": { mergeKey: "type" },
    },
    columns: [
      nameCol,
      col("Status", "string", "The status of the node"),
      col("Roles", "string", "The roles of the node"),
      ageCol,
      col("Version", "string", "Kubelet Version reported by the node."),
      col("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
      col("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
      col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
      col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
      col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
    ],
    cells: nodeCells,
  },
  namespaces: {
    name: "namespaces",
    kind: "Namespace",
    singular: "namespace",
    group: "",
    version: "v1",
    namespaced: false,
    shortNames: ["ns"],
    categories: [],
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    custom: false,
    createOnUpdate: false,
    generation: false,
    subresources: ["status", "finalize"],
    fieldLabels: ["metadata.name", "status.phase"],
    smp: { ...META_SMP, "status.conditions": { mergeKey: "type" } },
    columns: [nameCol, col("Status", "string", "The status of the namespace"), ageCol],
    cells: (o, now) => [str(meta(o).name), str(obj(o.status).phase) || "Active", age(o, now)],
  },
  destinationrules: {
    name: "destinationrules",
    kind: "DestinationRule",
    singular: "destinationrule",
    group: "networking.istio.io",
    version: "v1beta1",
    namespaced: true,
    shortNames: ["dr"],
    categories: ["istio-io", "networking-istio-io"],
    verbs: STD_VERBS,
    custom: true,
    createOnUpdate: false,
    generation: true,
    subresources: ["status"],
    fieldLabels: ["metadata.name", "metadata.namespace"],
    smp: {},
    columns: [nameCol, col("Host", "string", "The name of a service from the service registry"), ageCol],
    cells: (o, now) => [str(meta(o).name), str(obj(o.spec).host), age(o, now)],
  },
};

export const RESOURCE_NAMES = Object.keys(RESOURCES) as ResourceName[];

/** Hands out ClusterIPs and NodePorts the way the real allocators would (unique, in range). */
export class Allocator {
  private nextIp = 100;
  private readonly ips = new Set<string>();
  private nextPort = 30000;
  private readonly ports = new Set<number>();

  reserve(o: Obj): void {
    const spec = obj(o.spec);
    for (const ip of arr(spec.clusterIPs).concat(spec.clusterIP ?? [])) this.ips.add(str(ip));
    for (const p of arr(spec.ports)) if (typeof obj(p).nodePort === "number") this.ports.add(obj(p).nodePort as number);
  }

  release(o: Obj): void {
    const spec = obj(o.spec);
    this.ips.delete(str(spec.clusterIP));
    for (const p of arr(spec.ports)) this.ports.delete(obj(p).nodePort as number);
  }

  ip(): string {
    // 10.96.0.0/12 is kubeadm's default service range.
    for (;;) {
      const n = this.nextIp++;
      const ip = `10.${96 + ((n >> 16) & 15)}.${(n >> 8) & 255}.${n & 255}`;
      if (!this.ips.has(ip)) {
        this.ips.add(ip);
        return ip;
      }
    }
  }

  nodePort(): number {
    while (this.ports.has(this.nextPort)) this.nextPort = this.nextPort >= 32767 ? 30000 : this.nextPort + 1;
    this.ports.add(this.nextPort);
    return this.nextPort;
  }
}

/** Create-time defaults the real registry strategies and defaulters apply. */
export function applyDefaults(r: ResourceDef, o: Obj, alloc: Allocator, old?: Obj): void {
  if (r.name === "services") {
    const spec = (o.spec = { ...obj(o.spec) });
    const type = str(spec.type) || "ClusterIP";
    spec.type = type;
    if (spec.sessionAffinity === undefined) spec.sessionAffinity = "None";
    const oldSpec = old ? obj(old.spec) : undefined;
    if (type !== "ExternalName") {
      // Cluster IPs are immutable; an update that omits them keeps the old ones.
      if (!spec.clusterIP && oldSpec?.clusterIP) spec.clusterIP = oldSpec.clusterIP;
      if (!spec.clusterIP) spec.clusterIP = alloc.ip();
      if (!Array.isArray(spec.clusterIPs) || spec.clusterIPs.length === 0) spec.clusterIPs = [spec.clusterIP];
      spec.ipFamilies ??= ["IPv4"];
      spec.ipFamilyPolicy ??= "SingleStack";
      spec.internalTrafficPolicy ??= "Cluster";
    }
    const needsNodePort = type === "NodePort" || type === "LoadBalancer";
    if (needsNodePort) spec.externalTrafficPolicy ??= "Cluster";
    spec.ports = arr(spec.ports).map((p) => {
      const q = { ...obj(p) };
      q.protocol ??= "TCP";
      q.targetPort ??= q.port;
      if (needsNodePort && q.nodePort === undefined) {
        const prev = arr(oldSpec?.ports).map(obj).find((x) => x.port === q.port && x.nodePort !== undefined);
        q.nodePort = prev ? prev.nodePort : alloc.nodePort();
      }
      return q;
    });
    o.status ??= { loadBalancer: {} };
    alloc.reserve(o);
  } else if (r.name === "endpoints") {
    o.subsets = arr(o.subsets).map((s) => ({
      ...obj(s),
      ports: arr(obj(s).ports).map((p) => ({ protocol: "TCP", ...obj(p) })),
    }));
    if (arr(o.subsets).length === 0) delete o.subsets;
  } else if (r.name === "endpointslices") {
    if (Array.isArray(o.ports)) o.ports = o.ports.map((p) => ({ protocol: "TCP", ...obj(p) }));
  } else if (r.name === "namespaces") {
    const m = obj(o.metadata);
    m.labels = { ...obj(m.labels), "kubernetes.io/metadata.name": str(m.name) };
    o.spec ??= { finalizers: ["kubernetes"] };
    o.status ??= { phase: "Active" };
  }
}
