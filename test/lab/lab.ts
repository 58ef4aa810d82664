// The NAT lab: Linux network namespaces wired like real edge networks.
//
//                 wan ns: bridge br0   (WAN 192.0.2.0/24, TEST-NET-1)
//          ┌──────────────┼──────────────┐
//        cloud          nat1            nat2        <- WAN hosts / NAT WAN sides
//     192.0.2.10     192.0.2.11      192.0.2.12
//                      │ 10.10.1.1      │ 10.10.2.1  <- NAT LAN sides (MASQUERADE,
//               lan1 ns: br0      lan2 ns: br0          inbound only ESTABLISHED)
//              ┌───────┴──────┐        │
//            edge1          edge3    edge2
//         10.10.1.11     10.10.1.13  10.10.2.12
//
// Segments are bridges in their own namespaces, so the root namespace is never
// touched: veth pairs are created directly between two lab namespaces.
// Every lab is torn down by destroy(), by process exit/signal handlers, or —
// after a crash — by the stale sweep the next Lab.create() runs.

import { readFileSync } from "node:fs";
import { LabProcess, describeFailure, run, runOrThrow, type RunOptions, type RunResult, type SpawnOptions } from "./proc";

export type Segment = "wan" | "lan1" | "lan2";
export type LanSegment = Exclude<Segment, "wan">;

export interface LabHost {
  /** Host name inside the lab ("edge1"). */
  readonly name: string;
  /** Network namespace name (unique per lab instance). */
  readonly ns: string;
  /** The host's own address (for a NAT: its WAN address). */
  readonly ip: string;
  readonly segment: Segment;
  /** Interface carrying `ip`. */
  readonly iface: string;
  /** Default gateway, or null (WAN hosts have only the connected WAN route). */
  readonly gateway: string | null;
  /** Source address the WAN sees for this host's outbound traffic. */
  readonly publicIp: string;
}

export interface NatHost extends LabHost {
  readonly wanIp: string;
  readonly lanIp: string;
  readonly lan: LanSegment;
}

export interface LabHosts {
  readonly cloud: LabHost;
  readonly nat1: NatHost;
  readonly nat2: NatHost;
  readonly edge1: LabHost;
  readonly edge2: LabHost;
  readonly edge3: LabHost;
}

export type HostRef = string | LabHost;

export interface LabOptions {
  /** Label added to namespace names: [a-z0-9]{1,12}. */
  name?: string;
  /** Called before each build step; throwing aborts creation (and everything is cleaned up). */
  onStep?: (step: BuildStep, info: { prefix: string }) => void | Promise<void>;
  /** SIGTERM→SIGKILL grace for spawned processes on destroy. Default 2000 ms. */
  killGraceMs?: number;
  /** Remove namespaces left by crashed earlier runs. Default true. */
  cleanupStale?: boolean;
  /** Keep IPv6 (link-local) on lab links. Default false: IPv4 only, less noise. */
  ipv6?: boolean;
  /**
   * WAN /24, default "192.0.2.0/24". Note libp2p's isPrivate() (used by DCUtR)
   * counts every documentation/CGNAT range as private; see README.
   */
  wanSubnet?: string;
}

export type NatMapping = "preserve" | "random" | "range" | "sequential";
/** ports the sequential allocator cycles through (40000 on) */
const SEQUENTIAL_PORTS = 256;

export interface GatewayBehaviour {
  mapping?: NatMapping;
  inbound?: "drop" | "rst" | "icmp";
  tcpEstablishedTimeoutS?: number;
}

export type BuildStep = "stale-cleanup" | "netns" | "sysctl" | "links" | "addresses" | "nat-rules";

export interface AddressPlan {
  readonly wan: { readonly subnet: string; readonly base: string; readonly prefixLen: number };
  readonly lan1: { readonly subnet: string; readonly base: string; readonly prefixLen: number };
  readonly lan2: { readonly subnet: string; readonly base: string; readonly prefixLen: number };
  readonly cloud: string;
  readonly nat1: { readonly wan: string; readonly lan: string };
  readonly nat2: { readonly wan: string; readonly lan: string };
  readonly edge1: string;
  readonly edge2: string;
  readonly edge3: string;
  /** addHost() allocates from .<firstDynamic> upward on its segment. */
  readonly firstDynamic: number;
}

/** Build the plan for a WAN /24 given as "a.b.c.0/24"; LANs are fixed. */
export function makeAddressPlan(wanSubnet = "192.0.2.0/24"): AddressPlan {
  const m = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.)0\/24$/.exec(wanSubnet);
  if (!m) throw new Error(`wanSubnet must look like a.b.c.0/24, got '${wanSubnet}'`);
  const w = m[1]!;
  return {
    wan: { subnet: wanSubnet, base: w, prefixLen: 24 },
    lan1: { subnet: "10.10.1.0/24", base: "10.10.1.", prefixLen: 24 },
    lan2: { subnet: "10.10.2.0/24", base: "10.10.2.", prefixLen: 24 },
    cloud: `${w}10`,
    nat1: { wan: `${w}11`, lan: "10.10.1.1" },
    nat2: { wan: `${w}12`, lan: "10.10.2.1" },
    edge1: "10.10.1.11",
    edge2: "10.10.2.12",
    edge3: "10.10.1.13",
    firstDynamic: 20,
  };
}

/**
 * Default plan. WAN is TEST-NET-1 (RFC 5737), LANs are RFC 1918; all of it
 * exists only inside lab namespaces, none of which has a route off the machine.
 */
export const ADDRESS_PLAN: AddressPlan = makeAddressPlan();

/** Every lab namespace starts with this; the sweep only ever touches names matching NS_RE. */
export const NS_FAMILY = "emlab";
const NS_RE = /^emlab-(\d+)-([0-9a-z]+)-/;
const SEGMENTS: readonly Segment[] = ["wan", "lan1", "lan2"];
const HOST_NAME_RE = /^[a-z][a-z0-9]{0,11}$/; // "v-" + name must fit IFNAMSIZ (15)

export class LabCreateError extends Error {
  constructor(
    message: string,
    readonly step: BuildStep | null,
    readonly prefix: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "LabCreateError";
  }
}

// ---------------------------------------------------------------- tools

const SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin";
const toolCache = new Map<string, string>();

/** Absolute path of a tool; sbin dirs are searched too since CI PATHs often lack them. */
export function tool(name: string): string {
  let p = toolCache.get(name);
  if (!p) {
    p = Bun.which(name) ?? Bun.which(name, { PATH: SBIN_PATH }) ?? undefined;
    if (!p) throw new Error(`NAT lab needs '${name}' (Debian packages: iproute2 iptables procps curl)`);
    toolCache.set(name, p);
  }
  return p;
}

/** Throws a helpful error when the machine can't host a lab. */
export function preflight(): void {
  if (process.platform !== "linux") throw new Error("NAT lab needs Linux network namespaces");
  if (process.getuid?.() !== 0) throw new Error("NAT lab needs root (CAP_NET_ADMIN) to create network namespaces");
  for (const t of ["ip", "iptables-restore", "sysctl"]) tool(t);
}

// ---------------------------------------------------------------- identity

function processStartTime(pid: number | "self"): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces and parens; fields after the last ')' are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const start = fields[19]; // field 22: starttime
    return start ? Number(start).toString(36) : null;
  } catch {
    return null;
  }
}

const OWN_START = processStartTime("self") ?? "0";
let labSeq = 0;

/** True if the run that created namespaces with this pid/start tag is still alive (pid reuse aware). */
function ownerAlive(pid: number, start: string): boolean {
  if (pid === process.pid) return start === OWN_START;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const actual = processStartTime(pid);
  return actual === null || actual === start;
}

// ---------------------------------------------------------------- namespace helpers

export async function listNamespaces(): Promise<string[]> {
  const r = await run([tool("ip"), "netns", "list"], { timeoutMs: 10_000 });
  // Lines look like "name (id: 3)" or just "name".
  return r.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.length > 0);
}

async function netnsPids(ns: string): Promise<number[]> {
  const r = await run([tool("ip"), "netns", "pids", ns], { timeoutMs: 10_000 });
  if (r.code !== 0) return [];
  return r.stdout
    .split(/\s+/)
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 0 && p !== process.pid);
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Gone already.
  }
}

/**
 * Kill everything still inside the namespaces and delete them. Processes must
 * die first: `ip netns del` only unlinks the name, and a namespace with a live
 * process in it (plus its veths) would linger invisibly.
 */
async function deleteNamespaces(names: readonly string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const pidLists = await Promise.all(names.map(netnsPids));
  const pids = pidLists.flat();
  for (const p of pids) killQuietly(p, "SIGKILL");
  if (pids.length > 0) {
    // Bounded wait for the kernel to reap them.
    for (let i = 0; i < 50 && pids.some(isAlive); i++) await Bun.sleep(10);
  }
  // -force: keep going past names that are already gone.
  await run([tool("ip"), "-force", "-batch", "-"], { stdin: names.map((n) => `netns del ${n}\n`).join(""), timeoutMs: 20_000 });
  const remaining = new Set(await listNamespaces());
  return names.filter((n) => remaining.has(n));
}

/** A zombie counts as dead: it holds no namespace and its reaper may be slow (orphans go to pid 1). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/**
 * Delete lab namespaces whose creating process is gone (crashed or SIGKILLed
 * runs). Namespaces of live runs, including other concurrent test processes,
 * are left alone. Returns the names removed.
 */
export async function cleanupStaleLabs(opts: { includeLive?: boolean } = {}): Promise<string[]> {
  const ownLive = new Set([...liveLabs].flatMap((l) => l.namespaces));
  const stale = (await listNamespaces()).filter((n) => {
    const m = NS_RE.exec(n);
    if (!m || ownLive.has(n)) return false;
    return opts.includeLive === true || !ownerAlive(Number(m[1]), m[2]!);
  });
  const left = await deleteNamespaces(stale);
  return stale.filter((n) => !left.includes(n));
}

// ---------------------------------------------------------------- exit/signal safety net

const liveLabs = new Set<Lab>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
const signalHandlers = new Map<NodeJS.Signals, () => void>();

function destroyAllSync(): void {
  for (const lab of [...liveLabs]) lab.destroySync();
}

function installHandlers(): void {
  if (signalHandlers.size > 0) return;
  process.on("exit", destroyAllSync);
  for (const sig of SIGNALS) {
    const h = (): void => {
      destroyAllSync();
      uninstallHandlers();
      // Re-raise with default disposition so the exit status still says "killed by signal".
      process.kill(process.pid, sig);
    };
    signalHandlers.set(sig, h);
    process.on(sig, h);
  }
}

function uninstallHandlers(): void {
  process.off("exit", destroyAllSync);
  for (const [sig, h] of signalHandlers) process.off(sig, h);
  signalHandlers.clear();
}

// ---------------------------------------------------------------- the lab

interface HostPlan {
  host: LabHost | NatHost;
  /** (segment, iface inside the host) pairs this host plugs into. */
  links: { segment: Segment; iface: string; cidr: string }[];
  nat: boolean;
}

type HostTable = LabHosts & { readonly [name: string]: LabHost };

export interface HttpResponse {
  status: number;
  body: string;
}

export class Lab implements AsyncDisposable {
  /** Namespace-name prefix unique to this instance: emlab-<pid>-<start>-<seq>[-<name>]. */
  readonly prefix: string;
  readonly plan: AddressPlan;
  readonly hosts: HostTable;
  /** Every namespace this lab created (or tried to), segments included. */
  readonly namespaces: string[] = [];
  /** Milliseconds spent in each build step, plus "total". */
  readonly timings: Record<string, number> = {};
  /** Namespaces that could not be removed on destroy (should stay empty). */
  leftovers: string[] = [];

  private readonly opts: LabOptions;
  private readonly plans = new Map<string, HostPlan>();
  private readonly procs = new Set<LabProcess>();
  private destroyPromise: Promise<void> | null = null;
  private destroyedSync = false;

  private constructor(opts: LabOptions) {
    if (opts.name !== undefined && !/^[a-z0-9]{1,12}$/.test(opts.name)) {
      throw new Error(`lab name must match [a-z0-9]{1,12}, got '${opts.name}'`);
    }
    this.opts = opts;
    this.prefix = `${NS_FAMILY}-${process.pid}-${OWN_START}-${labSeq++}${opts.name ? `-${opts.name}` : ""}`;
    this.plan = makeAddressPlan(opts.wanSubnet);
    const A = this.plan;
    const hosts: Record<string, LabHost> = {};
    const add = (p: HostPlan): void => {
      this.plans.set(p.host.name, p);
      hosts[p.host.name] = p.host;
    };
    add(this.plainHost("cloud", "wan", A.cloud));
    add(this.natHost("nat1", "lan1", A.nat1.wan, A.nat1.lan));
    add(this.natHost("nat2", "lan2", A.nat2.wan, A.nat2.lan));
    add(this.plainHost("edge1", "lan1", A.edge1));
    add(this.plainHost("edge3", "lan1", A.edge3));
    add(this.plainHost("edge2", "lan2", A.edge2));
    this.hosts = hosts as HostTable;
  }

  /** Build the topology. On any failure everything created so far is removed before the error propagates. */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    preflight();
    const lab = new Lab(opts);
    liveLabs.add(lab);
    installHandlers();
    const t0 = performance.now();
    let current: BuildStep | null = null;
    try {
      const step = async (name: BuildStep, fn: () => Promise<unknown>): Promise<void> => {
        current = name;
        await opts.onStep?.(name, { prefix: lab.prefix });
        const s = performance.now();
        await fn();
        lab.timings[name] = Math.round(performance.now() - s);
      };
      if (opts.cleanupStale !== false) await step("stale-cleanup", () => cleanupStaleLabs());
      const plans = [...lab.plans.values()];
      await step("netns", () => lab.addNamespaces([...SEGMENTS.map((s) => lab.segmentNs(s)), ...plans.map((p) => p.host.ns)]));
      await step("sysctl", () =>
        Promise.all([
          ...SEGMENTS.map((s) => lab.sysctls(lab.segmentNs(s), "segment")),
          ...plans.map((p) => lab.sysctls(p.host.ns, p.nat ? "nat" : "host")),
        ]),
      );
      await step("links", () => Promise.all(SEGMENTS.map((s) => lab.wireSegment(s, plans))));
      await step("addresses", () => Promise.all(plans.map((p) => lab.configureHost(p))));
      await step("nat-rules", () => Promise.all(plans.filter((p) => p.nat).map((p) => lab.natRules(p.host.ns))));
    } catch (err) {
      await lab.destroy();
      const msg = err instanceof Error ? err.message : String(err);
      throw new LabCreateError(`lab ${lab.prefix} failed at step '${current}': ${msg}`, current, lab.prefix, { cause: err });
    }
    lab.timings.total = Math.round(performance.now() - t0);
    return lab;
  }

  get destroyed(): boolean {
    return this.destroyPromise !== null || this.destroyedSync;
  }

  /** Look up a host (including ones added with addHost). */
  host(ref: HostRef): LabHost {
    const name = typeof ref === "string" ? ref : ref.name;
    const h = this.plans.get(name)?.host;
    if (!h) throw new Error(`unknown lab host '${name}' (have: ${[...this.plans.keys()].join(", ")})`);
    return h;
  }

  /** Namespace of a host or of a segment ("wan", "lan1", "lan2"), for debugging inside bridges. */
  nsOf(ref: HostRef | Segment): string {
    if (typeof ref === "string" && (SEGMENTS as readonly string[]).includes(ref)) return this.segmentNs(ref as Segment);
    return this.host(ref).ns;
  }

  /** Run a command inside a host's namespace to completion. Never throws for a non-zero exit. */
  async exec(host: HostRef | Segment, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    this.assertUsable();
    return run([tool("ip"), "netns", "exec", this.nsOf(host), ...argv], opts);
  }

  /** Like exec(), but throws (with stderr) on a non-zero exit. */
  async execOrThrow(host: HostRef | Segment, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const r = await this.exec(host, argv, opts);
    if (r.code !== 0) throw new Error(`[${typeof host === "string" ? host : host.name}] ${describeFailure(argv, r)}`);
    return r;
  }

  /**
   * Start a long-running process inside a host's namespace. `ip netns exec`
   * execs in place, so handle.pid is the command itself. Tracked processes are
   * stopped by destroy().
   */
  spawn(host: HostRef, argv: readonly string[], opts: SpawnOptions = {}): LabProcess {
    this.assertUsable();
    const h = this.host(host);
    const p = new LabProcess(h.name, argv, [tool("ip"), "netns", "exec", h.ns, ...argv], opts);
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  /** Processes started with spawn() that have not exited yet. */
  get processes(): LabProcess[] {
    return [...this.procs].filter((p) => p.running);
  }

  /**
   * HTTP GET from inside a host's namespace (via curl). Throws if no HTTP
   * response arrives. curlArgs go before the URL (e.g. ["--local-port", "40000"]).
   */
  async httpGet(host: HostRef, url: string, opts: { timeoutMs?: number; curlArgs?: readonly string[] } = {}): Promise<HttpResponse> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const marker = "\n__EMLAB_HTTP_STATUS__:";
    const r = await this.exec(
      host,
      [tool("curl"), "-sS", "--noproxy", "*", "--max-time", String(timeoutMs / 1000), ...(opts.curlArgs ?? []), "-w", `${marker}%{http_code}`, url],
      { timeoutMs: timeoutMs + 2000 },
    );
    const i = r.stdout.lastIndexOf(marker);
    if (r.code !== 0 || i < 0) throw new Error(`GET ${url} from ${this.host(host).name} failed: ${r.stderr.trim() || `curl exit ${r.code}`}`);
    return { status: Number(r.stdout.slice(i + marker.length).trim()), body: r.stdout.slice(0, i) };
  }

  /**
   * GET <adminAddr>/status from inside a host's namespace and parse the JSON.
   * adminAddr is "ip:port" or a full base URL.
   */
  async fetchStatus<T = unknown>(host: HostRef, adminAddr: string, opts: { path?: string; timeoutMs?: number } = {}): Promise<T> {
    const base = /^https?:\/\//.test(adminAddr) ? adminAddr : `http://${adminAddr}`;
    const url = new URL(opts.path ?? "/status", base).toString();
    const res = await this.httpGet(host, url, opts);
    if (res.status < 200 || res.status >= 300) throw new Error(`GET ${url} from ${this.host(host).name}: HTTP ${res.status}: ${res.body.slice(0, 500)}`);
    try {
      return JSON.parse(res.body) as T;
    } catch {
      throw new Error(`GET ${url} from ${this.host(host).name}: not JSON: ${res.body.slice(0, 500)}`);
    }
  }

  /**
   * Add a host on a segment after creation (e.g. a third edge behind nat2, or a
   * relay on the WAN). Addresses are allocated from .20 upward.
   */
  async addHost(name: string, segment: Segment): Promise<LabHost> {
    this.assertUsable();
    if (!HOST_NAME_RE.test(name) || (SEGMENTS as readonly string[]).includes(name)) {
      throw new Error(`host name must match ${HOST_NAME_RE} and not be a segment name, got '${name}'`);
    }
    if (this.plans.has(name)) throw new Error(`lab host '${name}' already exists`);
    const used = new Set([...this.plans.values()].flatMap((p) => p.links.map((l) => l.cidr.split("/")[0])));
    const base = this.plan[segment].base;
    let ip: string | null = null;
    for (let i = this.plan.firstDynamic; i < 255 && ip === null; i++) if (!used.has(`${base}${i}`)) ip = `${base}${i}`;
    if (ip === null) throw new Error(`segment ${segment} is full`);
    const plan = this.plainHost(name, segment, ip);
    this.plans.set(name, plan);
    (this.hosts as Record<string, LabHost>)[name] = plan.host;
    try {
      await this.addNamespaces([plan.host.ns]);
      await this.sysctls(plan.host.ns, "host");
      await this.wireSegment(segment, [plan], false);
      await this.configureHost(plan);
    } catch (err) {
      this.plans.delete(name);
      delete (this.hosts as Record<string, LabHost>)[name];
      await deleteNamespaces([plan.host.ns]);
      throw err;
    }
    return plan.host;
  }

  /**
   * A "pod" behind `node`, as a CNI plugin attaches one: a namespace of its
   * own, a veth pair (`eth0` in the pod; `vp-NAME` on the node, holding the
   * pod CIDR's first address as the pod's gateway), the pod at the CIDR's
   * second address (or `ip`) with its default route through the node. The
   * node does not forward until something (the agent) turns forwarding on.
   */
  async addPod(node: string, name: string, cidr: string, ip?: string): Promise<LabHost> {
    this.assertUsable();
    if (!HOST_NAME_RE.test(name) || this.plans.has(name) || name.length > 12) throw new Error(`bad or taken pod name '${name}'`);
    const m = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(cidr);
    if (!m) throw new Error(`pod CIDR must be a /24 (a.b.c.0/24), got ${cidr}`);
    const nodeHost = this.host(node);
    const gw = `${m[1]}.1`;
    const podIp = ip ?? `${m[1]}.2`;
    const host: LabHost = { name, ns: `${this.prefix}-${name}`, ip: podIp, segment: nodeHost.segment, iface: "eth0", gateway: gw, publicIp: podIp };
    this.plans.set(name, { host, nat: false, links: [] });
    (this.hosts as Record<string, LabHost>)[name] = host;
    await this.addNamespaces([host.ns]);
    await this.sysctls(host.ns, "host");
    const hostSide = `vp-${name}`;
    const ipn = (ns: string, ...args: string[]) => runOrThrow([tool("ip"), "-n", ns, ...args], { timeoutMs: 10_000 });
    await ipn(nodeHost.ns, "link", "add", hostSide, "type", "veth", "peer", "name", "eth0", "netns", host.ns);
    await ipn(nodeHost.ns, "addr", "add", `${gw}/24`, "dev", hostSide);
    await ipn(nodeHost.ns, "link", "set", hostSide, "up");
    await ipn(host.ns, "link", "set", "lo", "up");
    await ipn(host.ns, "addr", "add", `${podIp}/24`, "dev", "eth0");
    await ipn(host.ns, "link", "set", "eth0", "up");
    await ipn(host.ns, "route", "add", "default", "via", gw);
    return host;
  }

  /**
   * Puts a carrier-grade NAT in front of `nat` (double NAT, as on mobile and
   * many broadband links): `nat`'s WAN side moves onto a shared-address
   * segment (100.64.0.0/24, RFC 6598) behind a new NAT host "cgnat", whose
   * WAN address is the one the world then sees for `nat`'s LAN. The carrier
   * NAT starts like the others (port-preserving, unsolicited inbound
   * dropped); change it with setGateway("cgnat", ...).
   */
  async addCarrierNat(nat: "nat1" | "nat2"): Promise<NatHost> {
    this.assertUsable();
    if (this.plans.has("cgnat")) throw new Error("the lab has a carrier NAT already");
    const inner = this.plans.get(nat)!;
    const used = new Set([...this.plans.values()].flatMap((p) => p.links.map((l) => l.cidr.split("/")[0])));
    let wanIp = "";
    for (let i = this.plan.firstDynamic; i < 255 && !wanIp; i++) if (!used.has(`${this.plan.wan.base}${i}`)) wanIp = `${this.plan.wan.base}${i}`;
    const cgn: NatHost = { name: "cgnat", ns: `${this.prefix}-cgnat`, ip: wanIp, segment: "wan", iface: "wan0", gateway: null, publicIp: wanIp, wanIp, lanIp: "100.64.0.1", lan: (inner.host as NatHost).lan };
    const segNs = `${this.prefix}-cgnseg`;
    this.plans.set("cgnat", { host: cgn, nat: true, links: [{ segment: "wan", iface: "wan0", cidr: `${wanIp}/24` }] });
    (this.hosts as Record<string, LabHost>).cgnat = cgn;
    await this.addNamespaces([cgn.ns, segNs]);
    await this.sysctls(cgn.ns, "nat");
    await this.sysctls(segNs, "segment");
    const batch = (ns: string, cmds: string[]) => runOrThrow([tool("ip"), "-n", ns, "-batch", "-"], { stdin: cmds.map((c) => `${c}\n`).join(""), timeoutMs: 20_000 });
    // the carrier NAT's WAN leg, on the WAN bridge
    await batch(this.segmentNs("wan"), [`link add v-cgnat type veth peer name wan0 netns ${cgn.ns}`, "link set v-cgnat master br0", "link set v-cgnat up"]);
    // the shared-address segment: a bridge with the carrier NAT's LAN leg and the inner NAT's new WAN leg
    await batch(this.segmentNs("wan"), ["link del v-" + nat]);
    await batch(segNs, [
      "link add br0 type bridge",
      "link set br0 up",
      "link set lo up",
      `link add v-cgnat type veth peer name lan0 netns ${cgn.ns}`,
      "link set v-cgnat master br0",
      "link set v-cgnat up",
      `link add v-${nat} type veth peer name wan0 netns ${inner.host.ns}`,
      `link set v-${nat} master br0`,
      `link set v-${nat} up`,
    ]);
    await batch(cgn.ns, ["link set lo up", `addr add ${wanIp}/24 dev wan0`, "link set wan0 up", "addr add 100.64.0.1/24 dev lan0", "link set lan0 up"]);
    await batch(inner.host.ns, ["addr add 100.64.0.2/24 dev wan0", "link set wan0 up", "route add default via 100.64.0.1 dev wan0"]);
    await this.natRules(cgn.ns);
    // who sees what now: the inner NAT's WAN address is a shared one, its LAN's public address the carrier's
    const moved = { ...(inner.host as NatHost), ip: "100.64.0.2", wanIp: "100.64.0.2", publicIp: wanIp };
    this.plans.set(nat, { ...inner, host: moved });
    (this.hosts as Record<string, LabHost>)[nat] = moved;
    for (const p of this.plans.values()) {
      if (p.host.segment === moved.lan) {
        const h = { ...p.host, publicIp: wanIp };
        p.host = h;
        (this.hosts as Record<string, LabHost>)[h.name] = h;
      }
    }
    return cgn;
  }

  /** Human-readable topology summary (for logs and the demo). */
  describe(): string {
    const lines = [`lab ${this.prefix}`];
    for (const { host, nat } of this.plans.values()) {
      const n = host as NatHost;
      lines.push(
        nat
          ? `  ${host.name.padEnd(8)} NAT  wan ${n.wanIp}  lan ${n.lanIp} (${n.lan})  ns ${host.ns}`
          : `  ${host.name.padEnd(8)} ${host.segment.padEnd(4)} ${host.ip.padEnd(12)} gw ${host.gateway ?? "-"}  public ${host.publicIp}  ns ${host.ns}`,
      );
    }
    return lines.join("\n");
  }

  /**
   * Stop every spawned process (SIGTERM, SIGKILL after killGraceMs), kill any
   * stragglers still in the namespaces, delete the namespaces. Idempotent;
   * never throws — problems are logged and left in `leftovers`.
   */
  destroy(): Promise<void> {
    this.destroyPromise ??= this.doDestroy();
    return this.destroyPromise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }

  /**
   * Synchronous teardown for process 'exit' and signal handlers, where awaiting
   * is impossible. SIGKILLs everything; no grace period.
   */
  destroySync(): void {
    if (this.destroyedSync) return;
    this.destroyedSync = true;
    liveLabs.delete(this);
    for (const p of this.procs) killQuietly(p.pid, "SIGKILL");
    if (this.namespaces.length === 0) return;
    try {
      // Names are passed as argv, never interpolated into the script.
      const script = 'for ns in "$@"; do for p in $("$IP" netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; done; ' +
        'for ns in "$@"; do "$IP" netns del "$ns" 2>/dev/null; done; exit 0';
      Bun.spawnSync(["/bin/sh", "-c", script, "sh", ...this.namespaces], {
        env: { ...process.env, IP: tool("ip") },
        stdout: "ignore",
        stderr: "ignore",
        timeout: 10_000,
      });
    } catch {
      // Last-chance cleanup: the next run's stale sweep catches anything left.
    }
  }

  // ------------------------------------------------------------ internals

  private async doDestroy(): Promise<void> {
    try {
      const procs = [...this.procs].filter((p) => p.running);
      for (const p of procs) p.kill("SIGTERM");
      const all = Promise.all(procs.map((p) => p.exited));
      const grace = this.opts.killGraceMs ?? 2000;
      if (procs.length > 0 && (await Promise.race([all.then(() => true), Bun.sleep(grace).then(() => false)])) === false) {
        for (const p of procs) p.kill("SIGKILL");
        await Promise.race([all, Bun.sleep(2000)]);
      }
      if (!this.destroyedSync) {
        let left = await deleteNamespaces(this.namespaces);
        if (left.length > 0) left = await deleteNamespaces(left); // one retry for late stragglers
        this.leftovers = left;
        if (left.length > 0) console.warn(`[lab] could not delete namespaces: ${left.join(", ")}`);
      }
    } catch (err) {
      console.warn(`[lab] destroy of ${this.prefix} hit an error (continuing): ${err instanceof Error ? err.message : String(err)}`);
      if (!this.destroyedSync) this.destroySync();
    } finally {
      this.destroyedSync = true;
      liveLabs.delete(this);
      if (liveLabs.size === 0) uninstallHandlers();
    }
  }

  private assertUsable(): void {
    if (this.destroyed) throw new Error(`lab ${this.prefix} is destroyed`);
  }

  private segmentNs(s: Segment): string {
    return `${this.prefix}-${s}`;
  }

  private plainHost(name: string, segment: Segment, ip: string): HostPlan {
    const P = this.plan;
    const gateway = segment === "wan" ? null : segment === "lan1" ? P.nat1.lan : P.nat2.lan;
    const publicIp = segment === "wan" ? ip : segment === "lan1" ? P.nat1.wan : P.nat2.wan;
    const host: LabHost = { name, ns: `${this.prefix}-${name}`, ip, segment, iface: "eth0", gateway, publicIp };
    return { host, nat: false, links: [{ segment, iface: "eth0", cidr: `${ip}/${this.plan[segment].prefixLen}` }] };
  }

  private natHost(name: string, lan: LanSegment, wanIp: string, lanIp: string): HostPlan {
    const host: NatHost = { name, ns: `${this.prefix}-${name}`, ip: wanIp, segment: "wan", iface: "wan0", gateway: null, publicIp: wanIp, wanIp, lanIp, lan };
    return {
      host,
      nat: true,
      links: [
        { segment: "wan", iface: "wan0", cidr: `${wanIp}/${this.plan.wan.prefixLen}` },
        { segment: lan, iface: "lan0", cidr: `${lanIp}/${this.plan[lan].prefixLen}` },
      ],
    };
  }

  private async addNamespaces(names: string[]): Promise<void> {
    // Recorded before creation so a half-finished batch is still cleaned up.
    this.namespaces.push(...names);
    await runOrThrow([tool("ip"), "-batch", "-"], { stdin: names.map((n) => `netns add ${n}\n`).join(""), timeoutMs: 20_000 });
  }

  private async sysctls(ns: string, kind: "segment" | "host" | "nat"): Promise<void> {
    const kv: string[] = [];
    // Set before any link exists, so new interfaces come up without IPv6 (lo keeps ::1).
    if (!this.opts.ipv6) kv.push("net.ipv6.conf.default.disable_ipv6=1");
    if (kind === "nat") kv.push("net.ipv4.ip_forward=1");
    // br_netfilter's knobs are per-namespace and default on: bridged frames would
    // traverse iptables/conntrack in the segment namespace. Segments are plain wires.
    if (kind === "segment") kv.push("net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0");
    if (kv.length === 0) return;
    // -e: the bridge keys only exist when br_netfilter is loaded.
    const r = await run([tool("ip"), "netns", "exec", ns, tool("sysctl"), "-q", "-e", "-w", ...kv], { timeoutMs: 10_000 });
    if (r.code !== 0 && kind === "nat") throw new Error(`sysctl in ${ns}: ${describeFailure(["sysctl", ...kv], r)}`);
  }

  /** Create the segment bridge (unless `existing`) and a veth from it to each host on the segment. */
  private async wireSegment(segment: Segment, plans: HostPlan[], create = true): Promise<void> {
    const cmds: string[] = [];
    if (create) cmds.push("link add br0 type bridge", "link set br0 up", "link set lo up");
    for (const p of plans) {
      for (const l of p.links) {
        if (l.segment !== segment) continue;
        const port = `v-${p.host.name}`;
        // Both ends are born inside lab namespaces; the root namespace never sees them.
        cmds.push(`link add ${port} type veth peer name ${l.iface} netns ${p.host.ns}`, `link set ${port} master br0`, `link set ${port} up`);
      }
    }
    if (cmds.length === 0) return;
    await runOrThrow([tool("ip"), "-n", this.segmentNs(segment), "-batch", "-"], { stdin: cmds.map((c) => `${c}\n`).join(""), timeoutMs: 20_000 });
  }

  private async configureHost(p: HostPlan): Promise<void> {
    const cmds = ["link set lo up"];
    for (const l of p.links) cmds.push(`addr add ${l.cidr} dev ${l.iface}`, `link set ${l.iface} up`);
    // NATs and WAN hosts get no default route: anything off-plan fails fast with "unreachable".
    if (p.host.gateway) cmds.push(`route add default via ${p.host.gateway} dev ${p.host.iface}`);
    await runOrThrow([tool("ip"), "-n", p.host.ns, "-batch", "-"], { stdin: cmds.map((c) => `${c}\n`).join(""), timeoutMs: 20_000 });
  }

  /**
   * How a NAT maps LAN source ports from now on: "preserve" (the default,
   * endpoint-independent: a free LAN port is kept) or "random"
   * (`--random-fully`: a fresh random port per connection, as carrier-grade
   * and some home NATs do; hole punching cannot work through it).
   * Connections already open keep their mapping.
   */
  /** NATs whose TCP mapping is the nftables sequential allocator */
  private readonly sequentialNats = new Set<string>();

  async setNatMapping(nat: "nat1" | "nat2" | "cgnat", mode: NatMapping): Promise<void> {
    await this.setGateway(nat, { mapping: mode });
  }

  /**
   * How a NAT behaves from now on (the field's gateways, issue 17):
   * - mapping: "preserve" (endpoint-independent, LAN port kept when free),
   *   "random" (`--random-fully`: a fresh random port per connection) or
   *   "sequential" (each new TCP connection the next port of 40000-40255,
   *   whatever its destination: endpoint-dependent but predictable),
   *   "range" (endpoint-independent but never the LAN port: 40000-49999,
   *   as NATs that allocate from their own pool do);
   * - inbound: the answer to an unsolicited packet on the WAN side: "drop"
   *   (silent, the default), "rst" (TCP RST / ICMP port unreachable for
   *   UDP, as a Linux gateway with no INPUT policy or many CPE routers do)
   *   or "icmp" (ICMP port unreachable for everything);
   * - tcpEstablishedTimeoutS: conntrack's idle timeout for established TCP
   *   (Linux default 432000 s; CPE routers use minutes);
   * Flows already tracked keep their mapping.
   */
  async setGateway(nat: "nat1" | "nat2" | "cgnat", g: GatewayBehaviour): Promise<void> {
    this.assertUsable();
    const ns = this.nsOf(nat);
    const ipt = (...args: string[]) => runOrThrow([tool("ip"), "netns", "exec", ns, tool("iptables"), ...args], { timeoutMs: 10_000 });
    if (g.mapping) {
      await ipt("-t", "nat", "-F", "POSTROUTING");
      // the sequential allocator is an nftables table of its own (iptables here is its nf_tables front end)
      if (this.sequentialNats.delete(nat)) await run([tool("ip"), "netns", "exec", ns, "nft", "delete", "table", "ip", "labseq"], { timeoutMs: 10_000 });
      if (g.mapping === "sequential") {
        this.sequentialNats.add(nat);
        // every new TCP connection takes the next port of 40000-40255, whatever its destination:
        // endpoint-dependent, as carrier NATs that allocate in order are
        const wan = (this.host(nat) as NatHost).wanIp;
        // through a map: numgen's number would reach the port field in host byte order
        const ports = Array.from({ length: SEQUENTIAL_PORTS }, (_, i) => `${i} : ${40000 + i}`).join(", ");
        const rules = `table ip labseq {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "wan0" meta l4proto tcp snat to ${wan} : numgen inc mod ${SEQUENTIAL_PORTS} map { ${ports} }\n }\n}\n`;
        await runOrThrow([tool("ip"), "netns", "exec", ns, "nft", "-f", "-"], { stdin: rules, timeoutMs: 10_000 });
      }
      if (g.mapping === "range") for (const p of ["tcp", "udp"]) await ipt("-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-p", p, "-j", "MASQUERADE", "--to-ports", "40000-49999");
      await ipt("-t", "nat", "-A", "POSTROUTING", "-o", "wan0", ...(g.mapping === "sequential" ? ["!", "-p", "tcp"] : []), "-j", "MASQUERADE", ...(g.mapping === "random" ? ["--random-fully"] : []));
    }
    if (g.inbound) {
      await ipt("-F", "LAB-UNSOLICITED");
      if (g.inbound === "rst") {
        await ipt("-A", "LAB-UNSOLICITED", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset");
        await ipt("-A", "LAB-UNSOLICITED", "-p", "udp", "-j", "REJECT", "--reject-with", "icmp-port-unreachable");
      } else if (g.inbound === "icmp") {
        await ipt("-A", "LAB-UNSOLICITED", "-p", "tcp", "-j", "REJECT", "--reject-with", "icmp-port-unreachable");
        await ipt("-A", "LAB-UNSOLICITED", "-p", "udp", "-j", "REJECT", "--reject-with", "icmp-port-unreachable");
      }
    }
    if (g.tcpEstablishedTimeoutS !== undefined) {
      await runOrThrow([tool("ip"), "netns", "exec", ns, tool("sysctl"), "-q", "-w", `net.netfilter.nf_conntrack_tcp_timeout_established=${g.tcpEstablishedTimeoutS}`], { timeoutMs: 10_000 });
    }
  }

  private async natRules(ns: string): Promise<void> {
    // Plain MASQUERADE (no --random): Linux keeps the LAN source port when it is
    // free on the WAN side, which hole punching relies on. Filtering is
    // conntrack-based: inbound from the WAN is forwarded only for flows a LAN
    // host started; unsolicited packets are silently dropped (no RST/ICMP).
    const rules = [
      "*nat",
      ":PREROUTING ACCEPT [0:0]",
      ":INPUT ACCEPT [0:0]",
      ":OUTPUT ACCEPT [0:0]",
      ":POSTROUTING ACCEPT [0:0]",
      "-A POSTROUTING -o wan0 -j MASQUERADE",
      "COMMIT",
      "*filter",
      ":INPUT DROP [0:0]",
      ":FORWARD DROP [0:0]",
      ":OUTPUT ACCEPT [0:0]",
      "-A INPUT -i lo -j ACCEPT",
      "-A INPUT -i lan0 -j ACCEPT",
      "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
      // Answer WAN pings like most gateways, so WAN reachability is easy to check.
      "-A INPUT -i wan0 -p icmp --icmp-type echo-request -j ACCEPT",
      // how unsolicited inbound is answered (setGateway): empty = silent drop
      ":LAB-UNSOLICITED - [0:0]",
      "-A INPUT -i wan0 -m conntrack --ctstate NEW,INVALID -j LAB-UNSOLICITED",
      "-A FORWARD -i lan0 -o wan0 -j ACCEPT",
      "-A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
      "COMMIT",
      "",
    ].join("\n");
    await runOrThrow([tool("ip"), "netns", "exec", ns, tool("iptables-restore")], { stdin: rules, timeoutMs: 20_000 });
  }
}

/** Create a lab, run fn, always destroy. */
export async function withLab<T>(fn: (lab: Lab) => T | Promise<T>, opts: LabOptions = {}): Promise<T> {
  const lab = await Lab.create(opts);
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}
