// The config file's shape. Field names are an interface (operators and tests
// depend on them) and follow upstream EdgeMesh where the concept is the same.
// Every object is strict, so a typo is an error rather than a silent default.
import { z } from "zod";
import { isHostPort, isIP } from "./net.ts";

const port = z.number().int().min(1).max(65535);
const hostPort = z.string().refine(isHostPort, { message: "expected host:port" });
const ip = z.string().refine((s) => isIP(s) !== 0, { message: "expected an IP address" });
// DNS-1123 subdomain, as Kubernetes requires for node and object names.
const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
    message: "expected a lowercase DNS name (a-z, 0-9, '-', '.')",
  });

export const protocolSchema = z.enum(["TCP", "UDP"]);
export const lbPolicySchema = z.enum(["RoundRobin", "Random", "ConsistentHash"]);

const staticPort = z.strictObject({
  name: z.string().default(""),
  port,
  targetPort: z.union([port, z.string().min(1)]).optional(),
  protocol: protocolSchema.default("TCP"),
});

const staticEndpoint = z.strictObject({
  ip,
  nodeName: z.string().default(""),
  hostname: z.string().default(""),
  ready: z.boolean().default(true),
  // named container ports, so a named targetPort can resolve per endpoint
  ports: z.array(z.strictObject({ name: z.string(), port, protocol: protocolSchema.default("TCP") })).default([]),
});

const staticService = z.strictObject({
  name: dnsName,
  namespace: dnsName.default("default"),
  // "None" makes the service headless (DNS answers with endpoint IPs)
  clusterIP: z.union([ip, z.literal("None")]),
  type: z.enum(["ClusterIP", "ExternalName"]).default("ClusterIP"),
  externalName: z.string().default(""),
  ports: z.array(staticPort).default([]),
  endpoints: z.array(staticEndpoint).default([]),
  sessionAffinity: z.enum(["None", "ClientIP"]).default("None"),
  sessionAffinityTimeoutSeconds: z.number().int().min(1).max(86400).default(10800),
  lbPolicy: lbPolicySchema.default("RoundRobin"),
});

const staticNode = z.strictObject({
  name: dnsName,
  // where the node's agent can be dialled: an IP (its tunnel.listenPort is
  // assumed) or host:port
  addresses: z.array(z.string().refine((s) => isIP(s) !== 0 || isHostPort(s), { message: "expected an IP address or host:port" })).default([]),
});

export const configSchema = z.strictObject({
  nodeName: dnsName.optional(),
  psk: z.string({ message: "required: path of the file holding the mesh secret" }).min(1),
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
  adminListen: hostPort.optional(),
  server: z
    .strictObject({
      name: dnsName.default("server"),
      listenPort: port.default(20004),
      listenAddresses: z.array(ip).default(["0.0.0.0"]),
      advertiseAddresses: z.array(z.string().min(1)).default([]),
      maxReservations: z.number().int().min(1).default(1024),
      maxConnectionsPerPeer: z.number().int().min(1).default(16),
      // libp2p private network (pnet) on every connection; must match the agents
      privateNetwork: z.boolean().default(true),
    })
    .prefault({}),
  agent: z
    .strictObject({
      servers: z.array(hostPort).default([]),
      tunnel: z
        .strictObject({
          listenPort: port.default(20006),
          listenAddresses: z.array(ip).default(["0.0.0.0"]),
          // extra addresses other agents may dial us at (e.g. a port-forward on the NAT)
          advertiseAddresses: z.array(hostPort).default([]),
          // private network (privnet v1): outsiders cannot start a handshake.
          // false saves its cost on trusted networks; membership is still
          // enforced by derived identities. Must match the server and all agents.
          privateNetwork: z.boolean().default(true),
        })
        .prefault({}),
      metadata: z
        .strictObject({
          source: z.enum(["kubernetes", "static"]).default("kubernetes"),
          kubernetes: z
            .strictObject({
              server: z.string().url({ message: "expected a URL such as http://127.0.0.1:10550" }).default("http://127.0.0.1:10550"),
              kubeconfig: z.string().default(""),
              inCluster: z.boolean().default(false),
            })
            .prefault({}),
          static: z
            .strictObject({
              nodes: z.array(staticNode).default([]),
              services: z.array(staticService).default([]),
            })
            .prefault({}),
        })
        .prefault({}),
      proxy: z
        .strictObject({
          enable: z.boolean().default(true),
          bridgeDeviceName: z.string().min(1).max(15).default("edgemesh0"),
          bridgeDeviceIP: ip.default("169.254.96.16"),
        })
        .prefault({}),
      dns: z
        .strictObject({
          enable: z.boolean().default(true),
          listen: hostPort.default("169.254.96.16:53"),
          clusterDomain: z.string().min(1).default("cluster.local"),
          upstreamServers: z.array(hostPort.or(ip)).default([]),
          cacheTTL: z.number().int().min(0).max(86400).default(30),
          ttl: z.number().int().min(0).max(3600).default(5),
        })
        .prefault({}),
      socks5: z
        .strictObject({
          enable: z.boolean().default(false),
          listen: hostPort.default("169.254.96.16:10800"),
        })
        .prefault({}),
    })
    .prefault({}),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type StaticService = z.infer<typeof staticService>;
export type StaticNode = z.infer<typeof staticNode>;
