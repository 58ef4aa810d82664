// An EdgeMesh deployment inside the NAT lab: the tunnel server on `cloud`,
// agents on edge1/edge2/edge3 (and optionally one on `cloud`, reachable
// without NAT), all real processes of the compiled binary. Shared by the
// tunnel tests, the benchmark and the demo.
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Lab } from "./lab";
import type { LabProcess } from "./proc";
import { waitFor } from "./wait";
import { tempDir } from "../util/temp.ts";

export const SERVER_PORT = 20004;
export const TUNNEL_PORT = 20006;
export const ADMIN = "127.0.0.1:10556";
export const SERVER_ADMIN = "127.0.0.1:10557";
export const SOCKS = "127.0.0.1:10800";

export interface AgentSpec {
  /** node name; also the lab host unless `host` says otherwise */
  name: string;
  host: string;
  /** extra YAML under `agent:` (indented by the caller's content) */
  hints?: Record<string, string[]>;
  logLevel?: string;
  /** more agent.servers entries for this agent only */
  extraServers?: string[];
  /** a relay agent (agent.tunnel.relay, a relay certificate) */
  relay?: boolean;
}

export interface Mesh {
  dir: string;
  psk: string;
  server: LabProcess;
  agents: Map<string, { spec: AgentSpec; proc: LabProcess; config: string }>;
  startServer(): LabProcess;
  startAgent(name: string): LabProcess;
  status<T = any>(name: string): Promise<T>;
  serverStatus<T = any>(): Promise<T>;
  /** waits until every agent holds a reservation on the server */
  waitReserved(names?: string[], timeoutMs?: number): Promise<void>;
  /** the server, then every agent; resolves once all hold a reservation */
  startAll(): Promise<void>;
  logs(name: string): string;
  /** every process's log on stderr, when EDGEMESH_TEST_LOGS is set (for a test's afterAll) */
  dumpLogsIfAsked(): void;
}

export interface MeshOptions {
  binary: string;
  agents: AgentSpec[];
  logLevel?: string;
  /** prefix each process's log lines on stderr (debugging) */
  echo?: boolean;
  /** pnet on every connection (default true) */
  privateNetwork?: boolean | "v1";
  /** more agent.servers entries listed before the real one (e.g. a server that is down) */
  extraServers?: string[];
  /** intercept ClusterIPs with iptables (agent.proxy.enable); default false */
  proxy?: boolean;
  /** YAML lines of agent.metadata.static.services entries, each starting with "- " */
  services?: string[];
  /** take services from this apiserver URL instead of the static list */
  kubernetes?: string;
  /** keep the directory with configs and logs after the process exits (the demo prints its path); default: removed */
  keepDir?: boolean;
  /** answer DNS on the bridge IP (needs `proxy`), forwarding other names to these upstreams */
  dns?: { upstreams: string[] };
  /** agent.socks5.nodePorts: ports of each agent's host other members may reach by node name; default the lab's test servers 9000-9002 */
  nodePorts?: number[];
  /**
   * agent.podNetwork on every agent: each node's pod CIDRs (the static nodes
   * list gets every node's, the node's own included, with its lab address)
   */
  podCIDRs?: Record<string, string[]>;
  /** agent.podNetwork.lane.enable (default: the config's, on) */
  podnetLane?: boolean;
  /** agent.tunnel.punchIcmpFilter (default: the config's, on) */
  punchIcmpFilter?: boolean;
  /** identity v2: a CA in the mesh directory (ca/), a key and certificate per node (certs/NAME.*), `trust` in every config; default true (a node does not start without) */
  certificates?: boolean;
}

/** runs one of the binary's CA commands; throws with its output when it fails */
export function caCommand(binary: string, args: string[]): void {
  const r = Bun.spawnSync([binary, ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`edgemesh ${args.join(" ")}: ${r.stderr.toString()}`);
}

function yamlList(xs: string[]): string {
  return `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
}

export function startMesh(lab: Lab, o: MeshOptions): Mesh {
  const dir = o.keepDir ? mkdtempSync(join(tmpdir(), "edgemesh-mesh-")) : tempDir("edgemesh-mesh");
  const psk = join(dir, "psk");
  writeFileSync(psk, `${crypto.randomUUID()}-${crypto.randomUUID()}\n`, { mode: 0o600 });
  const serverIp = lab.hosts.cloud.ip;
  const level = o.logLevel ?? "info";
  const serverConfig = join(dir, "server.yaml");
  const trust = (name: string, role = "agent") => {
    if (o.certificates === false) return [];
    if (!existsSync(join(dir, "ca"))) caCommand(o.binary, ["ca", "init", "--dir", join(dir, "ca")]);
    caCommand(o.binary, ["cert", "issue", "--ca", join(dir, "ca"), "--node", name, "--role", role, "--out", join(dir, "certs")]);
    return [`trust: {ca: ${join(dir, "ca", "ca.pub")}, cert: ${join(dir, "certs", `${name}.crt`)}, key: ${join(dir, "certs", `${name}.key`)}, revocationsCache: ${join(dir, `${name}.revocations`)}}`];
  };
  writeFileSync(
    serverConfig,
    [`nodeName: cloud`, ...trust("cloud", "server"), `psk: ${psk}`, `logLevel: ${level}`, `adminListen: ${SERVER_ADMIN}`, `server:`, `  listenPort: ${SERVER_PORT}`, `  advertiseAddresses: [${serverIp}]`, `  privateNetwork: ${o.privateNetwork ?? true}`, ...(o.certificates ? [`  revocations: ${join(dir, "revoked")}`] : []), ""].join("\n"),
  );
  const agents = new Map<string, { spec: AgentSpec; proc: LabProcess; config: string }>();
  const mesh: Mesh = {
    dir,
    psk,
    server: undefined as unknown as LabProcess,
    agents,
    startServer() {
      mesh.server = lab.spawn("cloud", [o.binary, "server", "--config", serverConfig], { logFile: join(dir, "server.log"), echo: o.echo });
      return mesh.server;
    },
    startAgent(name) {
      const a = agents.get(name);
      if (!a) throw new Error(`no agent ${name}`);
      a.proc = lab.spawn(a.spec.host, [o.binary, "agent", "--config", a.config], { logFile: join(dir, `${name}.log`), echo: o.echo });
      return a.proc;
    },
    status: (name) => lab.fetchStatus(agents.get(name)!.spec.host, ADMIN),
    serverStatus: () => lab.fetchStatus("cloud", SERVER_ADMIN),
    async waitReserved(names = [...agents.keys()], timeoutMs = 20_000) {
      for (const n of names) {
        await waitFor(
          async () => {
            const st = await mesh.status<{ servers: Array<{ address: string; reservation: boolean }> }>(n);
            return st.servers.some((s) => s.address === `${serverIp}:${SERVER_PORT}` && s.reservation);
          },
          { timeoutMs, intervalMs: 200, description: `${n} holds a reservation` },
        );
      }
    },
    async startAll() {
      mesh.startServer();
      for (const n of agents.keys()) mesh.startAgent(n);
      await mesh.waitReserved();
    },
    logs(name) {
      const p = name === "server" ? mesh.server : agents.get(name)?.proc;
      return p?.output("both") ?? "";
    },
    dumpLogsIfAsked() {
      if (process.env.EDGEMESH_TEST_LOGS) for (const n of ["server", ...agents.keys()]) console.error(`---- ${n}\n${mesh.logs(n)}`);
    },
  };
  for (const spec of o.agents) {
    const hints = Object.entries(spec.hints ?? {});
    // the pod network needs every node in the static list, with its pod CIDRs and address
    const pods = o.podCIDRs ?? {};
    for (const n of Object.keys(pods)) if (!hints.some(([h]) => h === n)) hints.push([n, n === spec.name || !lab.hosts[n] ? [] : [lab.hosts[n]!.ip]]);
    const config = join(dir, `${spec.name}.yaml`);
    writeFileSync(
      config,
      [
        `nodeName: ${spec.name}`,
        ...trust(spec.name, spec.relay ? "relay" : "agent"),
        `psk: ${psk}`,
        `logLevel: ${spec.logLevel ?? level}`,
        `adminListen: ${ADMIN}`,
        `agent:`,
        `  servers: ${yamlList([...(o.extraServers ?? []), ...(spec.extraServers ?? []), `${serverIp}:${SERVER_PORT}`])}`,
        `  tunnel: {listenPort: ${TUNNEL_PORT}, privateNetwork: ${o.privateNetwork ?? true}${spec.relay ? ", relay: {enable: true}" : ""}${o.punchIcmpFilter === undefined ? "" : `, punchIcmpFilter: ${o.punchIcmpFilter}`}}`,
        `  metadata:`,
        o.kubernetes ? `    source: kubernetes` : `    source: static`,
        ...(o.kubernetes ? [`    kubernetes: {server: "${o.kubernetes}"}`] : []),
        `    static:`,
        hints.length ? `      nodes:` : `      nodes: []`,
        ...(hints.length ? hints.map(([n, addrs]) => `        - {name: ${n}, addresses: ${yamlList(n === spec.name && pods[n] && lab.hosts[spec.host] ? [lab.hosts[spec.host]!.ip] : addrs)}${pods[n] ? `, podCIDRs: ${yamlList(pods[n]!)}` : ""}}`) : []),
        o.services?.length ? `      services:` : `      services: []`,
        ...(o.services ?? []).map((l) => `        ${l}`),
        `  proxy: {enable: ${o.proxy ?? false}}`,
        ...(o.podCIDRs ? [`  podNetwork: {enable: true${o.podnetLane === undefined ? "" : `, lane: {enable: ${o.podnetLane}}`}}`] : []),
        o.dns ? `  dns: {enable: true, upstreamServers: ${yamlList(o.dns.upstreams)}}` : `  dns: {enable: false}`,
        `  socks5: {enable: true, listen: "${SOCKS}", nodePorts: [${(o.nodePorts ?? [9000, 9001, 9002]).join(", ")}]}`,
        "",
      ].join("\n"),
    );
    agents.set(spec.name, { spec, proc: undefined as unknown as LabProcess, config });
  }
  return mesh;
}

/**
 * A 36-byte echo from `from`'s SOCKS5 front door to `node`'s port `port`
 * (test/fixtures/tcp-sink.ts in echo mode there): true when it came back.
 */
export async function socksEcho(lab: Lab, from: string, node: string, port = 9001, timeoutMs = 5_000): Promise<boolean> {
  const client = join(import.meta.dir, "..", "fixtures", "socks-client.ts");
  const r = await lab.exec(from, [process.execPath, client, SOCKS, node, String(port), "echo"], { timeoutMs });
  return /"ok":true/.test(r.stdout);
}

/** the usual afterAll of a lab test: logs on request, then the lab destroyed */
export async function endLab(lab: Lab | undefined, mesh: Mesh | undefined): Promise<void> {
  mesh?.dumpLogsIfAsked();
  await lab?.destroy();
}

/**
 * Restarts agents with no NAT state left from before: stops them, waits (up
 * to 3 s) for their tunnel sockets to finish closing — a socket still
 * sending its FIN when the NATs forget the flow retransmits it for minutes
 * through a gateway that answers with ICMP, and holds the punch's 4-tuple —
 * then flushes the NATs' conntrack tables and starts the agents again.
 */
export async function restartFresh(lab: Lab, mesh: Mesh, agents: string[], nats: string[]): Promise<void> {
  await Promise.all(agents.map((n) => mesh.agents.get(n)?.proc?.stop(5000)));
  const closing = ["state", "fin-wait-1", "state", "fin-wait-2", "state", "closing", "state", "last-ack", "sport", "=", `:${TUNNEL_PORT}`];
  await waitFor(
    async () => {
      for (const n of agents) {
        const r = await lab.exec(mesh.agents.get(n)!.spec.host, ["ss", "-Htan", ...closing]);
        if (r.stdout.trim()) return false;
      }
      return true;
    },
    { timeoutMs: 3_000, intervalMs: 50, description: "tunnel sockets closed" },
  ).catch(() => {});
  await Promise.all(nats.map((n) => lab.exec(n, ["conntrack", "-F"])));
  for (const n of agents) mesh.startAgent(n);
  await mesh.waitReserved(agents);
}
