// The config file's shape. Field names are an interface (operators and tests
// depend on them) and follow upstream EdgeMesh where the concept is the same.
// Every object is strict, so a typo is an error rather than a silent default.
import { z } from "zod";
import { isHostPort, isIP, parseHostPort } from "./net.ts";
import { podCidr } from "../model/cidr.ts";
import { dnsLabel, externalName, ianaSvcName, portName, serviceableIP, strictIP } from "../model/grammar.ts";

const port = z.number().int().min(1).max(65535);
const hostPort = z.string().refine(isHostPort, { message: "expected host:port" });
const privateNetwork = z.union([z.boolean(), z.literal("v1")]).default(true);
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
  name: portName.default("").describe("Port name; SRV records are `_<name>._<protocol>.<service>.<namespace>.svc.<clusterDomain>`."),
  port: port.describe("Service port: what clients connect to at the ClusterIP or service name."),
  targetPort: z
    .union([port, ianaSvcName])
    .optional()
    .describe("Backend port: a number, or the name of a port in the endpoints' `ports`. Default: the same as `port`."),
  protocol: protocolSchema.default("TCP").describe("Transport protocol of the port."),
});

const staticEndpoint = z.strictObject({
  ip: strictIP.describe("Backend IP address."),
  nodeName: z.union([z.literal(""), dnsName]).default("").describe('Node the backend runs on; its agent is reached through the tunnel. "" (or this node\'s name) dials the IP directly.'),
  hostname: z.union([z.literal(""), dnsLabel]).default("").describe("Gives the backend its own DNS record `<hostname>.<service>.<namespace>.svc.<clusterDomain>`."),
  ready: z.boolean().default(true).describe("Only ready endpoints receive traffic or appear in DNS."),
  ports: z
    .array(
      z.strictObject({
        name: portName.describe("Port name, matched by a service port's named `targetPort`."),
        port: port.describe("Port number on the backend."),
        protocol: protocolSchema.default("TCP").describe("Transport protocol of the port."),
      }),
    )
    .default([])
    .describe("Named container ports, so a named `targetPort` resolves per endpoint."),
});

const staticService = z.strictObject({
  name: dnsLabel.describe("Service name."),
  namespace: dnsLabel.default("default").describe("Service namespace."),
  clusterIP: z
    .union([serviceableIP, z.literal("None")])
    .describe('Virtual IP clients connect to (intercepted with iptables). "None" makes the service headless: DNS answers with the ready endpoints\' IPs.'),
  type: z.enum(["ClusterIP", "ExternalName"]).default("ClusterIP").describe("ExternalName services are DNS aliases (CNAME to `externalName`) and get no listener."),
  externalName: externalName.default("").describe("Target name when `type: ExternalName`."),
  ports: z.array(staticPort).default([]).describe("Service ports."),
  endpoints: z.array(staticEndpoint).default([]).describe("Backends of the service."),
  sessionAffinity: z.enum(["None", "ClientIP"]).default("None").describe("ClientIP keeps a client on the same backend for `sessionAffinityTimeoutSeconds`; it wins over `lbPolicy`."),
  sessionAffinityTimeoutSeconds: z.number().int().min(1).max(86400).default(10800).describe("How long (s) ClientIP affinity lasts after a client's last connection."),
  lbPolicy: lbPolicySchema.default("RoundRobin").describe("How a backend is picked: RoundRobin, Random, or ConsistentHash on the client IP."),
});

/** a network interface's name, as the kernel takes it */
const interfaceName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, { message: "expected an interface name (A-Z, a-z, 0-9, '_', '.', '-', at most 15)" });

const staticNode = z.strictObject({
  name: dnsName.describe("Node name (the `nodeName` its agent runs with)."),
  addresses: z
    .array(z.string().refine((s) => isIP(s) !== 0 || isHostPort(s), { message: "expected an IP address or host:port" }))
    .default([])
    .describe("Where the node's agent can be dialled: an IP (its `agent.tunnel.listenPort` is assumed) or host:port."),
  podCIDRs: z.array(podCidr).max(4).default([]).describe("The node's pod CIDRs (as Node.spec.podCIDRs), for `agent.podNetwork`; list this node too, with its own."),
});

export const configSchema = z.strictObject({
  nodeName: dnsName
    .optional()
    .describe("This node's name, as Kubernetes knows it (EndpointSlice `nodeName`); it also derives the node's tunnel identity. Default: `$NODE_NAME`, else the hostname (lowercased)."),
  psk: z
    .string({ message: "required: path of the file holding the mesh secret" })
    .min(1)
    .describe("Path of the file holding the mesh secret, the same on every node (`edgemesh psk --out FILE` writes one with mode 600; at least 16 bytes; a warning at start when others can read it). A relative path is relative to the config file."),
  trust: z
    .strictObject({
      ca: z.string().min(1).describe("The mesh CA's public key (`ca.pub` from `edgemesh ca init`)."),
      cert: z.string().min(1).describe("This node's certificate (`edgemesh cert issue`): its name, role and key, signed by the CA."),
      key: z.string().min(1).describe("This node's private key (mode 600)."),
      revocationsCache: z
        .string()
        .min(1)
        .default("/var/lib/edgemesh/revocations")
        .describe("Where an agent keeps the newest revocation list its servers handed it, so a revoked node stays refused across restarts (the units' StateDirectory)."),
    })
    .optional()
    .describe("Required to run a node (identity v2): its key and certificate under the mesh CA (paths relative to the config file, as `psk`; `edgemesh ca init`, `edgemesh cert issue`). Peers know each other by verified certificates only; a peer without one is refused."),
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info").describe("Least severe level that is logged (to stderr, one line per event)."),
  adminListen: hostPort
    .optional()
    .describe("Admin HTTP endpoint (`/healthz`, `/readyz`, `/status`, `/metrics`), read by `edgemesh status`. Default: `127.0.0.1:10556` for the agent, `127.0.0.1:10557` for the server."),
  flow: z
    .strictObject({
      maxStreamWindowKiB: z
        .number()
        .int()
        .min(256)
        .max(16384)
        .default(4096)
        .describe(
          "Largest receive window one tunnel stream may grant its peer (KiB). A stream starts at yamux's 256 KiB and grows while its reader keeps up; a single stream moves at most about this much per round trip (4 MiB: 335 Mbit/s at 100 ms).",
        ),
      windowBudgetMiB: z
        .number()
        .int()
        .min(1)
        .max(4096)
        .default(32)
        .describe(
          "Bytes (MiB) all tunnel streams of this process together may be granted above their initial 256 KiB windows. Past it windows stop growing (the status counts refusals): what peers can queue here, and so memory, stays bounded whatever the number of streams and the speed of the links.",
        ),
    })
    .prefault({})
    .describe("Flow control of the tunnel (both roles): how much a peer may send ahead of what is consumed."),
  server: z
    .strictObject({
      name: dnsName.default("server").describe("Unused since certificates: a server's name is the one in its certificate (give each server of an HA set its own). Kept so older configs load."),
      listenPort: port.default(20004).describe("TCP port agents connect to."),
      listenAddresses: z.array(ip).default(["0.0.0.0"]).describe("Local addresses to listen on."),
      advertiseAddresses: z
        .array(
          z
            .string()
            .min(1)
            .refine((v) => !/^[^:\s]+:\d+$/.test(v) && !/^\[.*\]:\d+$/.test(v), { message: "give the address without a port: agents use server.listenPort" })
            .refine((v) => !/\s|\//.test(v), { message: "expected an IP address or DNS name" }),
        )
        .default([])
        .describe("Public IPs or DNS names agents reach the server at (no port: `listenPort` is used), announced to peers so they can build relay addresses."),
      maxReservations: z.number().int().min(1).default(1024).describe("Relay reservations held at once, over all agents; an agent beyond it is refused."),
      maxConnectionsPerPeer: z.number().int().min(1).default(16).describe("Connections one peer may hold to the server."),
      revocations: z
        .string()
        .default("")
        .describe("Identity v2: the CA-signed revocation list (`edgemesh ca revoke --out FILE`), read at start and whenever it changes, and handed to every agent; revoked nodes are cut off within seconds. Relative to the config file."),
      maxRelayedConnectionsPerPeer: z
        .number()
        .int()
        .min(1)
        .max(65536)
        .default(256)
        .describe("Relayed connections one agent may have open through the server at once (each holds two streams and their buffers here); more are refused (`relay_refused_total`)."),
      laneRelay: z
        .strictObject({
          enable: z.boolean().default(true).describe("Forward the pod network's lane datagrams between agents whose connection runs through this server (sealed end to end; only addresses agents registered over their verified connection may use it)."),
          port: z.number().int().min(1).max(65535).default(20007).describe("UDP port of the lane relay (open it to the agents like the server's TCP port)."),
        })
        .prefault({})
        .describe("Lane relay for relayed agents (docs/podnet.md)."),
      privateNetwork: privateNetwork.describe(
        "Private network keyed from the psk on every connection: without the secret a peer cannot even start a handshake (v2: a proof of the psk bound to the connection). `v1`: the encrypting construction of earlier releases, for a mesh being upgraded. Must match the agents.",
      ),
    })
    .prefault({})
    .describe("The tunnel server (`edgemesh server`), on a host with a public address."),
  agent: z
    .strictObject({
      servers: z
        .array(hostPort)
        .default([])
        .describe("Tunnel servers, and relay agents (`agent.tunnel.relay`), as host:port; several for high availability. The agent keeps a relay reservation on each at the same time and reaches relayed peers through any of them, nearest (lowest RTT) first. Empty: only direct paths."),
      tunnel: z
        .strictObject({
          listenPort: port.default(20006).describe("TCP port other agents reach this one at."),
          listenAddresses: z.array(ip).default(["0.0.0.0"]).describe("Local addresses to listen on."),
          advertiseAddresses: z
            .array(hostPort)
            .default([])
            .describe("Extra host:port other agents may dial this one at (e.g. a port forward on the NAT)."),
          punchIcmpFilter: z
            .boolean()
            .default(true)
            .describe("Drop (iptables filter INPUT, chain EDGEMESH-PUNCH) ICMP unreachables (except \"fragmentation needed\") about this agent's TCP from `listenPort`: a gateway that refuses a punch SYN with ICMP would otherwise end the attempt, and the SYN sent again in its place may be refused by our own NAT. Installed only when `agent.servers` lists a server or relay (punching is coordinated through them). A dial from the tunnel port to a host that is gone then waits for its timeout instead of failing at once."),
          relay: z
            .strictObject({
              enable: z
                .boolean()
                .default(false)
                .describe("Serve relay reservations and relay connections between other members, as a tunnel server does, with the same caps. For an agent others can reach (a cloud node, a site gateway with a port forward): it keeps a site's nodes reachable when the cloud link is down and saves the trip to the cloud. Needs a certificate with role relay (`edgemesh cert issue --role relay`). Other agents use it when it is in their `agent.servers`."),
              advertiseAddresses: z
                .array(hostPort)
                .default([])
                .describe("host:port other agents reach this relay at (a public IP, a port forward), announced to peers like `tunnel.advertiseAddresses`."),
              maxReservations: z.number().int().min(1).default(1024).describe("Relay reservations held at once, over all agents (as `server.maxReservations`)."),
              maxRelayedConnectionsPerPeer: z.number().int().min(1).max(65536).default(256).describe("Relayed connections one agent may have open through this relay at once (as `server.maxRelayedConnectionsPerPeer`)."),
            })
            .prefault({})
            .describe("This agent as a relay for other members (upstream EdgeMesh's relay nodes)."),
          privateNetwork: privateNetwork.describe(
            "Private network: outsiders cannot start a handshake. `true` = privnet v2 (a proof of the psk, then noise's bytes as they are); `v1` = the encrypting construction of earlier releases, while a mesh is upgraded; `false` on trusted networks (membership is still enforced by certificates). Must match the server and all agents.",
          ),
        })
        .prefault({})
        .describe("The agent's own tunnel endpoint (libp2p over TCP)."),
      metadata: z
        .strictObject({
          source: z.enum(["kubernetes", "static"]).default("kubernetes").describe("Where services, endpoints and nodes come from."),
          kubernetes: z
            .strictObject({
              server: z
                .string()
                .url({ message: "expected a URL such as http://127.0.0.1:10550" })
                .default("http://127.0.0.1:10550")
                .describe("KubeEdge MetaServer (edgecore `metaServer.enable: true`), or an apiserver URL. Used when neither `kubeconfig` nor `inCluster` is set."),
              kubeconfig: z.string().default("").describe("Path of a kubeconfig (current context); when set it wins over `server` and `inCluster`."),
              inCluster: z.boolean().default(false).describe("Use the pod's service-account token and CA (running as a pod); wins over `server`."),
              maxListPageMiB: z.number().int().min(1).max(1024).default(64).describe("Largest LIST page read (MiB); a larger one is asked for again with fewer objects per page. Never read whole beyond it."),
              maxEventKiB: z
                .number()
                .int()
                .min(64)
                .max(65536)
                .default(4096)
                .describe("Largest watch event read (KiB; Kubernetes objects are at most about 1.5 MiB). A larger one restarts the watch with backoff, keeping the last state, and is counted (`controller_oversized_total`)."),
              maxObjects: z.number().int().min(1).max(10_000_000).default(100_000).describe("Objects of one resource held at once; beyond it new ones are dropped and counted."),
            })
            .prefault({})
            .describe("The Kubernetes API to watch when `source: kubernetes`."),
          static: z
            .strictObject({
              nodes: z.array(staticNode).default([]).describe("Other nodes and the addresses their agents can be dialled at."),
              services: z.array(staticService).default([]).describe("Services with their ports and endpoints."),
            })
            .prefault({})
            .describe("Services without Kubernetes, used when `source: static`; reloaded when this file changes or on SIGHUP."),
        })
        .prefault({})
        .describe("Service discovery."),
      proxy: z
        .strictObject({
          enable: z.boolean().default(true).describe("Intercept ClusterIP traffic with iptables (needs root or CAP_NET_ADMIN)."),
          bridgeDeviceName: interfaceName
            .default("edgemesh0").describe("Device that carries the agent's listen IP; created (dummy, else bridge, else the IP goes on `lo`) when missing."),
          bridgeDeviceIP: z
            .string()
            .refine((s) => isIP(s) === 4, { message: "expected an IPv4 address" })
            .default("169.254.96.16")
            .describe("IP the per-service listeners bind to and ClusterIP traffic is DNATed to."),
          podSources: z
            .strictObject({
              interfaces: z
                .array(z.string().regex(/^[A-Za-z0-9_.-]{1,15}\+?$/, { message: "expected an interface name, optionally ending in '+' (a prefix)" }))
                .max(64)
                .default(["cni0", "docker0"])
                .describe("Interfaces this node's pods send from (their bridge; `cali+` for a prefix). Traffic arriving there may use services, DNS and SOCKS5 on the bridge IP."),
              cidrs: z
                .array(z.string().refine((s) => /^\d+\.\d+\.\d+\.\d+\/\d{1,2}$/.test(s) && isIP(s.split("/")[0]!) === 4 && Number(s.split("/")[1]) <= 32, { message: "expected an IPv4 CIDR, e.g. 10.244.1.0/24" }))
                .max(64)
                .default([])
                .describe("Pod source networks, for pod networks without a bridge interface. A source address can be forged on the LAN: prefer `interfaces`."),
            })
            .prefault({})
            .describe("Which traffic from other interfaces counts as this node's pods. This host's own processes are always served; everything else sent to the bridge IP (LAN neighbours routing ClusterIPs or 169.254.96.16 via this node) is dropped by the agent's filter rules."),
        })
        .prefault({})
        .describe("ClusterIP interception."),
      podNetwork: z
        .strictObject({
          enable: z.boolean().default(false).describe("Carry pod IP traffic between nodes over the tunnel (L3): every other node's pod CIDRs are routed into a TUN device and its packets go to the agent of the node that owns the destination, on whatever path that peer has. Needs root (or CAP_NET_ADMIN) and /dev/net/tun."),
          device: interfaceName
            .default("edgemesh-tun")
            .describe("Name of the TUN device the agent creates (and removes on stop)."),
          mtu: z.number().int().min(576).max(9000).default(1400).describe("MTU of the TUN device: room for the tunnel's per-packet overhead under a 1500-byte path. TCP MSS is clamped to it; larger packets with DF get ICMP \"fragmentation needed\"."),
          maxQueueKiB: z.number().int().min(16).max(65536).default(1024).describe("Packets queued for one peer while its tunnel stream is busy (KiB); beyond it packets are dropped and counted (`podnet_dropped_total{reason=\"queue\"}`)."),
          lane: z
            .strictObject({
              enable: z.boolean().default(true).describe("Carry single pod packets (ping, DNS, ACKs, requests) to peers reached directly as sealed UDP datagrams, from the reader thread, for latency; bulk TCP stays on the tunnel stream. Keys are exchanged over the verified tunnel connection; a peer whose lane does not answer is served by the stream."),
              port: z.number().int().min(1).max(65535).default(20007).describe("UDP port of the lane on every node (peers send to it; open it between nodes like the tunnel port)."),
            })
            .prefault({})
            .describe("The pod network's datagram lane (docs/podnet.md)."),
        })
        .prefault({})
        .describe("Pod network across sites: pod IPs reachable between nodes, beside the CNI that runs pods on each node."),
      dns: z
        .strictObject({
          enable: z.boolean().default(true).describe("Answer service names for applications on this node."),
          listen: hostPort.default("169.254.96.16:53").describe("UDP and TCP address the DNS server listens on; point pods (edgecore `clusterDNS`) or the host's resolv.conf here."),
          clusterDomain: z.string().min(1).default("cluster.local").describe("Cluster domain: names under it are answered from the service table, NXDOMAIN when unknown."),
          upstreamServers: z
            // IPs only: resolving an upstream's own name would need DNS
            .array(z.string().refine((s) => isIP(s) !== 0 || isIP(parseHostPort(s)?.host ?? "") !== 0, { message: "expected an IP address or IP:port" }))
            .default([])
            .describe("Resolvers for other names (IP or IP:port). Default: the nameservers of /etc/resolv.conf, without this listener."),
          cacheTTL: z.number().int().min(0).max(86400).default(30).describe("Longest time (s) a forwarded answer is cached."),
          cacheSize: z.number().int().min(0).max(1_000_000).default(10_000).describe("Forwarded answers held in the cache at once; the least recently used go first. 0 turns the cache off."),
          forwardRatePerSource: z
            .number()
            .int()
            .min(0)
            .max(100_000)
            .default(100)
            .describe("Forwarded lookups (names outside the cluster, not in the cache) one client address may cause per second, in bursts of twice that; beyond it REFUSED (`dns_rate_limited_total`). 0 = no limit. Cluster names and cached answers are never limited."),
          tcpMaxConnections: z.number().int().min(1).max(65535).default(256).describe("DNS-over-TCP clients at once; more are closed at accept (`dns_tcp_refused_total`)."),
          tcpIdleSeconds: z.number().int().min(1).max(3600).default(10).describe("A DNS-over-TCP connection without a query for this long is closed."),
          ttl: z.number().int().min(0).max(3600).default(5).describe("TTL (s) of answers about services, so changes propagate quickly."),
        })
        .prefault({})
        .describe("DNS for service names (`svc`, `svc.ns`, `svc.ns.svc.<clusterDomain>`); other names are forwarded."),
      limits: z
        .strictObject({
          proxySessionsPerPeer: z
            .number()
            .int()
            .min(1)
            .max(65536)
            .default(16384)
            .describe("Proxied sessions one member may have open through this agent at once (each is a socket here; yamux alone would allow 65,536 per connection); more are refused (`tunnel_streams_refused_total{reason=\"busy\"}`)."),
          proxySessions: z.number().int().min(1).max(1_000_000).default(65536).describe("Proxied sessions all members together may have open through this agent at once."),
          udpSessionsPerClient: z
            .number()
            .int()
            .min(1)
            .max(65536)
            .default(64)
            .describe("UDP sessions one client address may have open on one service port (a source port each; source addresses can be forged on a LAN); datagrams that would open more are dropped (`traffic_udp_refused_total`)."),
          udpSessionsPerPort: z.number().int().min(1).max(1_000_000).default(4096).describe("UDP sessions one service port may have open at once, over all clients."),
        })
        .prefault({})
        .describe("Bounds on what clients and other members may make this agent hold; each refusal is counted in /metrics."),
      socks5: z
        .strictObject({
          enable: z.boolean().default(false).describe("SOCKS5 entry for clients without root or iptables: `curl --socks5-hostname 127.0.0.1:10800 http://echo.demo:9000/`."),
          listen: hostPort.default("127.0.0.1:10800").describe("Address of the SOCKS5 listener. The default serves this host's own processes only; `169.254.96.16:10800` (the bridge IP) also serves its pods, and the agent's rules drop other hosts' traffic to that address."),
          username: z
            .string()
            .max(255)
            .regex(/^[\x21-\x7e]*$/, { message: "expected printable ASCII without spaces" })
            .default("")
            .describe("Require this username and the password in `passwordFile` (RFC 1929). Default: none, for a listener only this host's users can reach."),
          passwordFile: z.string().default("").describe("File holding the SOCKS5 password (mode 600; a warning at start otherwise). A relative path is relative to the config file."),
          maxConnections: z.number().int().min(1).max(65535).default(256).describe("SOCKS5 clients at once; more are closed at accept and counted (`socks5_refused_total`)."),
          nodePorts: z
            .array(port)
            .max(64)
            .default([22])
            .describe("Ports of this node's own host that other members may reach by its node name (SOCKS5 `ssh edge2`): the tunnel dials 127.0.0.1 at these ports only. Nothing else on this host's loopback or LAN is open to the mesh; services are reached at their endpoints on this node."),
        })
        .prefault({})
        .describe("SOCKS5 front door to services and to other nodes by name."),
    })
    .prefault({})
    .describe("The agent (`edgemesh agent`), on every edge node."),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type StaticService = z.infer<typeof staticService>;
export type StaticNode = z.infer<typeof staticNode>;
