// One schema per kind the controller reads from the metadata source. Only the
// fields we use are checked (each with Kubernetes' own grammar, and bounded);
// the rest of an object is kept as it came and never read. An object that
// fails is rejected alone: the reflector drops it and reports the field.
import { z } from "zod";
import { podCidr } from "../../model/cidr.ts";
import { dnsLabel, dnsSubdomain, externalName, ianaSvcName, portName, portNumber, serviceableIP, strictIP } from "../../model/grammar.ts";
import type { KubeObject } from "../../kube/reflector.ts";

export const PROXY_NAME_LABEL = "service.edgemesh.kubeedge.io/service-proxy-name";
export const LB_POLICY_ANNOTATION = "edgemesh.io/lb-policy";
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

/** list bounds: Kubernetes' own where it has one, generous elsewhere */
export const LIMITS = { servicePorts: 256, slicePorts: 100, sliceEndpoints: 1000, endpointAddresses: 100, subsets: 1000, subsetAddresses: 1000, nodeAddresses: 64 };

const protocol = z.enum(["TCP", "UDP", "SCTP"]).optional();
const anyString = z.string().max(1024).optional();

const metadata = (name: z.ZodType<string>, labels: z.ZodType = z.unknown()) =>
  z.looseObject({
    name,
    namespace: dnsLabel.optional(),
    resourceVersion: anyString,
    labels: labels.optional(),
    annotations: z.looseObject({ [LB_POLICY_ANNOTATION]: anyString }).optional(),
  });

const servicePort = z.looseObject({
  name: portName.optional(),
  port: portNumber,
  protocol,
  targetPort: z.union([portNumber, ianaSvcName]).optional(),
});

/** a ClusterIP, or "None" (headless), or "" (ExternalName) */
const clusterIP = z.union([z.literal("None"), z.literal(""), serviceableIP]);

export const serviceSchema = z.looseObject({
  metadata: metadata(dnsLabel, z.looseObject({ [PROXY_NAME_LABEL]: anyString })),
  spec: z
    .looseObject({
      type: z.enum(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]).optional(),
      clusterIP: clusterIP.optional(),
      clusterIPs: z.array(clusterIP).max(2).optional(),
      externalName: externalName.optional(),
      ports: z.array(servicePort).max(LIMITS.servicePorts).optional(),
      sessionAffinity: z.enum(["None", "ClientIP"]).optional(),
      sessionAffinityConfig: z
        .looseObject({ clientIP: z.looseObject({ timeoutSeconds: z.number().int().min(1).max(86400).optional() }).optional() })
        .optional(),
    })
    .optional(),
});

const endpointPort = z.looseObject({ name: portName.optional(), port: portNumber.optional(), protocol });

export const endpointSliceSchema = z
  .looseObject({
    metadata: metadata(dnsSubdomain, z.looseObject({ [SERVICE_NAME_LABEL]: dnsLabel.optional() })),
    addressType: z.enum(["IPv4", "IPv6", "FQDN"]),
    endpoints: z
      .array(
        z.looseObject({
          addresses: z.array(z.string().max(253)).min(1).max(LIMITS.endpointAddresses),
          conditions: z.looseObject({ ready: z.boolean().nullable().optional() }).optional(),
          nodeName: dnsSubdomain.optional(),
          hostname: dnsLabel.optional(),
        }),
      )
      .max(LIMITS.sliceEndpoints)
      .nullable()
      .optional(),
    ports: z.array(endpointPort).max(LIMITS.slicePorts).nullable().optional(),
  })
  .superRefine((s, ctx) => {
    // addresses follow the slice's type; FQDN slices are not proxied but are still checked
    const check = s.addressType === "FQDN" ? dnsSubdomain : serviceableIP;
    (s.endpoints ?? []).forEach((e, i) =>
      e.addresses.forEach((a, j) => {
        const r = check.safeParse(a);
        if (!r.success) ctx.addIssue({ code: "custom", path: ["endpoints", i, "addresses", j], message: r.error.issues[0]?.message ?? "invalid" });
      }),
    );
  });

const endpointAddress = z.looseObject({ ip: serviceableIP, nodeName: dnsSubdomain.optional(), hostname: dnsLabel.optional() });

export const endpointsSchema = z.looseObject({
  metadata: metadata(dnsLabel),
  subsets: z
    .array(
      z.looseObject({
        addresses: z.array(endpointAddress).max(LIMITS.subsetAddresses).optional(),
        ports: z.array(endpointPort).max(LIMITS.slicePorts).optional(),
      }),
    )
    .max(LIMITS.subsets)
    .optional(),
});

export const nodeSchema = z.looseObject({
  metadata: metadata(dnsSubdomain),
  // the pod network routes these: a malformed one rejects the node object
  spec: z.looseObject({ podCIDR: podCidr.optional(), podCIDRs: z.array(podCidr).max(4).optional() }).optional(),
  status: z
    .looseObject({
      addresses: z
        .array(z.looseObject({ type: z.string().max(64), address: z.string().max(253) }))
        .max(LIMITS.nodeAddresses)
        .superRefine((list, ctx) =>
          list.forEach((a, i) => {
            // the addresses we dial must be IPs; Hostname and others are not read
            if ((a.type === "InternalIP" || a.type === "ExternalIP") && !strictIP.safeParse(a.address).success)
              ctx.addIssue({ code: "custom", path: [i, "address"], message: "expected an IPv4 or IPv6 address, strictly written" });
          }),
        )
        .optional(),
    })
    .optional(),
});

export const destinationRuleSchema = z.looseObject({
  metadata: metadata(dnsLabel),
  spec: z
    .looseObject({
      trafficPolicy: z
        .looseObject({ loadBalancer: z.looseObject({ simple: anyString, consistentHash: z.unknown().optional() }).optional() })
        .optional(),
    })
    .optional(),
});

/** why an object is unusable: "field: message", or undefined when it is fine */
export function rejectionOf(schema: z.ZodType, o: unknown): string | undefined {
  const r = schema.safeParse(o);
  if (r.success) return undefined;
  const issue = r.error.issues[0]!;
  const field = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("").replace(/^\./, "");
  return `${field || "(object)"}: ${issue.message}`;
}

export const KIND_SCHEMAS: Record<string, z.ZodType> = {
  services: serviceSchema,
  endpointslices: endpointSliceSchema,
  endpoints: endpointsSchema,
  nodes: nodeSchema,
  destinationrules: destinationRuleSchema,
};

export type { KubeObject };
