// A fake kube-apiserver for testing list/watch clients and driving kubectl.
// It speaks the real wire protocol (paths, discovery, Status errors,
// resourceVersion semantics, chunked watch streams, bookmarks, 410 expiry,
// limit/continue paging, Table printing, the PATCH dialects), keeps every
// kind in memory, and adds knobs real servers lack: compaction on demand,
// dropped connections, injected garbage and outages.
//
// It is built on node:http rather than Bun.serve because Bun.serve holds a
// streamed response's headers back until the first body byte: a watch with
// nothing to report yet would leave the client's fetch() pending, unlike
// kube-apiserver, which answers 200 and flushes headers at once. node:http
// also lets a test reset a watch's socket mid-stream.

import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { parse as parseYaml } from "yaml";
import { gvPath, openApiDocument, openApiIndex, openApiV2 } from "./openapi.ts";
import { applyRemovals, isObj, jsonMergePatch, jsonPatch, PatchError, strategicMergePatch, type Obj } from "./patch.ts";
import {
  Allocator,
  applyDefaults,
  apiVersionOf,
  RESOURCE_NAMES,
  RESOURCES,
  type ResourceDef,
  type ResourceName,
} from "./resources.ts";
import {
  matchFields,
  matchLabels,
  parseFieldSelector,
  parseLabelSelector,
  type FieldRequirement,
  type LabelRequirement,
} from "./selectors.ts";
import {
  alreadyExists,
  badRequest,
  conflict,
  fail,
  failure,
  FakeApiError,
  forbidden,
  invalid,
  methodNotAllowed,
  notFound,
  pathNotFound,
  success,
  tooLargeRv,
  typeMeta,
} from "./status.ts";

export interface FakeApiServerOptions {
  /** 0 or omitted: an ephemeral port. */
  port?: number;
  /** Loopback unless told otherwise. */
  hostname?: string;
  tls?: { cert: string; key: string; ca?: string; requireClientCert?: boolean };
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string;
  /** Default true; false makes discovery.k8s.io/v1 answer 404 like KubeEdge MetaServer or pre-1.21 clusters. */
  serveEndpointSlices?: boolean;
  /** Default false: networking.istio.io is only served where Istio's CRDs are installed. */
  serveDestinationRules?: boolean;
  /** Period of BOOKMARK events on watches that allow them; default 60000 like the real cacher, 0 disables. */
  bookmarkIntervalMs?: number;
  /** Events kept per kind for watch resume and continue tokens; default 10000. */
  historyLimit?: number;
  /**
   * How a new watch from a resourceVersion older than the kept history is refused:
   * "event" (default, what kube-apiserver does): HTTP 200 and a single ERROR event with a 410 Status;
   * "status": a plain HTTP 410 with a Status body.
   */
  staleWatch?: "event" | "status";
  /** Reason in 410 Status objects: "Expired" (current servers, default) or "Gone" (old ones). */
  goneReason?: "Expired" | "Gone";
  /** Apply create-time defaults (ClusterIP allocation, protocol TCP, ...); default true. */
  defaulting?: boolean;
  /**
   * Refuse objects in namespaces that do not exist (404), as kube-apiserver's NamespaceLifecycle
   * admission does. Default false: the namespace is created on the fly.
   */
  strictNamespaces?: boolean;
  /** Serve the minimal /openapi/v2 and /openapi/v3 kubectl needs for apply/create validation; default true. */
  openapi?: boolean;
  /** gitVersion reported by /version; default "v1.31.0". */
  gitVersion?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: string;
  at: number;
}

export interface InjectedFailure {
  /** HTTP status to answer with; default 500. */
  status?: number;
  /** How many matching requests fail; default 1. */
  count?: number;
  match?: (r: RecordedRequest) => boolean;
  /** Seconds for a Retry-After header (sent with 429/503 by the real server). */
  retryAfterSeconds?: number;
}

export type PatchType = "merge" | "strategic" | "json" | "apply";

/** What the helper API hands back: a deep copy, typed loosely so tests can reach into spec/status. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
    [k: string]: unknown;
  };
  // `any` on purpose: tests reach into arbitrary spec/status fields.
  [k: string]: any;
}

type EventType = "ADDED" | "MODIFIED" | "DELETED";

interface HistoryEvent {
  rv: number;
  type: EventType;
  /** The object after the change; for DELETED, its last state stamped with the deletion RV. */
  obj: Obj;
  /** The object before the change (MODIFIED/DELETED). */
  prev?: Obj;
  /** Serialized plain event line, computed once and shared by all watchers. */
  line?: string;
}

class Bucket {
  readonly objects = new Map<string, Obj>();
  history: HistoryEvent[] = [];
  /** Highest RV whose events are no longer kept; a watch must start at or after it. */
  compactedThrough = 0;
  private sorted: string[] | null = null;
  readonly watches = new Set<Watch>();
  constructor(readonly def: ResourceDef) {}

  sortedKeys(): string[] {
    this.sorted ??= [...this.objects.keys()].sort(cmp);
    return this.sorted;
  }
  invalidate(): void {
    this.sorted = null;
  }
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** First index whose key is >= target. */
function lowerBound(keys: string[], target: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid]! < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const keyOf = (def: ResourceDef, ns: string | undefined, name: string) => (def.namespaced ? `${ns ?? ""}/${name}` : name);
const metaOf = (o: Obj): Obj => (isObj(o.metadata) ? o.metadata : {});
const str = (v: unknown): string => (typeof v === "string" ? v : "");

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string | Uint8Array;
}
/** Either a complete reply or a watch that takes over the response. */
type Outcome = Reply | { watch: (res: http.ServerResponse) => void };

interface Filter {
  ns?: string;
  labels: LabelRequirement[];
  fields: FieldRequirement[];
}

function matches(f: Filter, o: Obj): boolean {
  const m = metaOf(o);
  if (f.ns !== undefined && m.namespace !== f.ns) return false;
  if (f.labels.length && !matchLabels(f.labels, isObj(m.labels) ? (m.labels as Record<string, string>) : undefined)) return false;
  return f.fields.length === 0 || matchFields(f.fields, o);
}

interface TableOpts {
  version: "v1" | "v1beta1";
  include: "None" | "Metadata" | "Object";
}

/** Go's strconv.ParseBool, which the apiserver uses for watch= and friends. */
function parseBool(v: string | null): boolean | undefined {
  if (v === null) return undefined;
  if (["1", "t", "T", "true", "TRUE", "True"].includes(v)) return true;
  if (["0", "f", "F", "false", "FALSE", "False", ""].includes(v)) return false;
  throw badRequest(`invalid boolean value: ${v}`);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** How the apiserver rejects inconsistent list/watch query parameters. */
function invalidListOptions(field: string, detail: string): FakeApiError {
  const message = `${field}: Forbidden: ${detail}`;
  return fail(422, "Invalid", `ListOptions.meta.k8s.io "" is invalid: ${message}`, {
    group: "meta.k8s.io",
    kind: "ListOptions",
    causes: [{ reason: "FieldValueForbidden", message: `Forbidden: ${detail}`, field }],
  });
}

const nowStamp = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

class Watch {
  closed = false;
  timer: ReturnType<typeof setTimeout> | undefined;
  constructor(
    readonly server: FakeApiServer,
    readonly bucket: Bucket,
    readonly filter: Filter,
    readonly bookmarks: boolean,
    readonly table: TableOpts | undefined,
    private readonly res: http.ServerResponse,
  ) {}

  write(line: string): void {
    if (this.closed) return;
    if (this.res.destroyed || this.res.writableEnded) return this.detach();
    // Each event goes out as its own chunk, flushed, like the apiserver's watch encoder.
    this.res.write(line.endsWith("\n") ? line : `${line}\n`);
  }

  /** Maps a stored change to what this watcher sees, honouring selector transitions like the cacher. */
  deliver(ev: HistoryEvent): void {
    const now = matches(this.filter, ev.obj);
    let type: EventType | undefined;
    let o = ev.obj;
    if (ev.type === "MODIFIED") {
      const was = ev.prev !== undefined && matches(this.filter, ev.prev);
      if (now) type = was ? "MODIFIED" : "ADDED";
      else if (was) {
        // Leaving the selection reads as a delete of the old content at the new RV.
        type = "DELETED";
        o = { ...ev.prev, metadata: { ...metaOf(ev.prev!), resourceVersion: String(ev.rv) } };
      }
    } else if (now) type = ev.type;
    if (!type) return;
    if (!this.table && type === ev.type) {
      ev.line ??= JSON.stringify({ type, object: this.server.withType(this.bucket.def, ev.obj) });
      this.write(ev.line);
    } else this.write(this.server.eventLine(this.bucket.def, type, o, this.table));
  }

  bookmark(rv: number, initialEventsEnd = false): void {
    if (!this.bookmarks) return;
    const metadata: Obj = { resourceVersion: String(rv) };
    if (initialEventsEnd) metadata.annotations = { "k8s.io/initial-events-end": "true" };
    this.write(JSON.stringify({ type: "BOOKMARK", object: { ...typeMeta(this.bucket.def), metadata } }));
  }

  detach(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.bucket.watches.delete(this);
  }

  /** Graceful: the terminating chunk is sent. Abrupt: the socket is destroyed mid-response. */
  end(abrupt: boolean): void {
    if (this.closed) return;
    this.detach();
    if (abrupt) this.res.destroy();
    else this.res.end();
  }
}

interface Target {
  def: ResourceDef;
  ns?: string;
  name?: string;
  sub?: string;
  legacyWatch: boolean;
}

type Served = Record<ResourceName, boolean>;

export class FakeApiServer {
  readonly requests: RecordedRequest[] = [];
  /** How a new watch from a too-old resourceVersion is refused; may be changed at any time. */
  staleWatch: "event" | "status";
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly buckets = new Map<ResourceName, Bucket>();
  private readonly served: Served;
  private readonly alloc = new Allocator();
  private rv = 0;
  private rvWaiters: Array<{ rv: number; resolve: () => void }> = [];
  private bookmarkTimer: ReturnType<typeof setInterval> | undefined;
  private downMode: "refuse" | "unavailable" | undefined;
  private failures: Array<Required<Pick<InjectedFailure, "status">> & InjectedFailure & { left: number }> = [];
  private readonly forbidden = new Map<ResourceName, Set<string> | "all">();
  /** Last configuration each field manager server-side-applied, by kind/key/manager. */
  private readonly applied = new Map<string, Obj>();
  private portNumber = 0;
  private readonly historyLimit: number;
  private readonly goneReason: string;

  private constructor(private readonly opts: FakeApiServerOptions) {
    this.staleWatch = opts.staleWatch ?? "event";
    this.historyLimit = Math.max(1, opts.historyLimit ?? 10000);
    this.goneReason = opts.goneReason ?? "Expired";
    for (const n of RESOURCE_NAMES) this.buckets.set(n, new Bucket(RESOURCES[n]));
    this.served = {
      services: true,
      endpoints: true,
      nodes: true,
      namespaces: true,
      endpointslices: opts.serveEndpointSlices ?? true,
      destinationrules: opts.serveDestinationRules ?? false,
    };
  }

  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const api = new FakeApiServer(opts);
    for (const ns of ["default", "kube-system", "kube-public", "kube-node-lease"]) api.create("namespaces", { metadata: { name: ns } });
    await api.listen(opts.port ?? 0);
    const every = opts.bookmarkIntervalMs ?? 60000;
    if (every > 0) {
      api.bookmarkTimer = setInterval(() => api.sendBookmarks(), every);
      api.bookmarkTimer.unref?.();
    }
    return api;
  }

  get port(): number {
    return this.portNumber;
  }
  get url(): string {
    const host = (this.opts.hostname ?? "127.0.0.1").includes(":") ? `[${this.opts.hostname}]` : (this.opts.hostname ?? "127.0.0.1");
    return `${this.opts.tls ? "https" : "http"}://${host}:${this.portNumber}`;
  }
  /** The latest resourceVersion handed out (global across kinds, like etcd's revision). */
  get resourceVersion(): string {
    return String(this.rv);
  }

  async stop(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.bookmarkTimer = undefined;
    this.endWatches(undefined, false);
    for (const w of this.rvWaiters) w.resolve();
    this.rvWaiters = [];
    await this.closeListener();
  }

  // ---- test-side helpers ------------------------------------------------

  create(kind: ResourceName, obj: object): KubeObject {
    const def = RESOURCES[kind];
    return this.clone(def, this.doCreate(def, str(metaOf(obj as Obj).namespace) || undefined, obj as Obj, false));
  }

  /** PUT semantics: a stale metadata.resourceVersion is a 409 Conflict; omit it for an unconditional update. */
  update(kind: ResourceName, obj: object): KubeObject {
    const def = RESOURCES[kind];
    const m = metaOf(obj as Obj);
    return this.clone(def, this.doUpdate(def, str(m.namespace) || undefined, str(m.name), obj as Obj, undefined, false));
  }

  /** Create or replace, whichever applies. */
  upsert(kind: ResourceName, obj: object): KubeObject {
    const m = metaOf(obj as Obj);
    if (this.lookup(RESOURCES[kind], str(m.namespace) || undefined, str(m.name))) {
      const { resourceVersion: _drop, ...meta } = m;
      return this.update(kind, { ...obj, metadata: meta });
    }
    return this.create(kind, obj);
  }

  patch(kind: ResourceName, namespace: string | undefined, name: string, patch: unknown, type: PatchType = "merge"): KubeObject {
    const ct = {
      merge: "application/merge-patch+json",
      strategic: "application/strategic-merge-patch+json",
      json: "application/json-patch+json",
      apply: "application/apply-patch+yaml",
    }[type];
    const body = JSON.stringify(patch);
    return this.clone(RESOURCES[kind], this.doPatch(RESOURCES[kind], namespace || undefined, name, undefined, ct, body, new URLSearchParams({ fieldManager: "test" })).obj);
  }

  /** Returns the deleted object, or undefined when there was none. Finalizers are honoured. */
  delete(kind: ResourceName, namespace: string | undefined, name: string): KubeObject | undefined {
    const def = RESOURCES[kind];
    const o = this.lookup(def, namespace || undefined, name);
    if (!o) return undefined;
    this.doDelete(def, namespace || undefined, name, undefined, false);
    return this.clone(def, o);
  }

  get(kind: ResourceName, namespace: string | undefined, name: string): KubeObject | undefined {
    const def = RESOURCES[kind];
    const o = this.lookup(def, namespace || undefined, name);
    return o ? this.clone(def, o) : undefined;
  }

  list(kind: ResourceName, namespace?: string): KubeObject[] {
    const b = this.bucket(kind);
    const out: KubeObject[] = [];
    for (const k of b.sortedKeys()) {
      const o = b.objects.get(k)!;
      if (namespace === undefined || metaOf(o).namespace === namespace) out.push(this.clone(b.def, o));
    }
    return out;
  }

  /** Serve or hide a group's resource at run time (e.g. a CRD installed later). */
  setServed(kind: ResourceName, served: boolean): void {
    this.served[kind] = served;
  }

  /** Answer 403 to these verbs (default: all) on a kind. */
  forbid(kind: ResourceName, verbs?: string[]): void {
    this.forbidden.set(kind, verbs ? new Set(verbs) : "all");
  }
  allow(kind: ResourceName): void {
    this.forbidden.delete(kind);
  }

  /** Make the next matching requests fail with a Status body. */
  failNext(f: InjectedFailure = {}): void {
    this.failures.push({ ...f, status: f.status ?? 500, left: f.count ?? 1 });
  }

  /**
   * Forget all kept history: watches and continue tokens from earlier RVs now get 410.
   * With `expireOpenWatches`, open watches also receive an ERROR 410 event and end,
   * as when the real watch cache falls behind etcd's compaction.
   */
  compact(opts: { expireOpenWatches?: boolean } = {}): void {
    for (const b of this.buckets.values()) {
      b.history = [];
      b.compactedThrough = this.rv;
    }
    if (opts.expireOpenWatches) this.expireWatches();
  }

  /** Send an ERROR 410 event on every open watch (optionally of one kind) and end it. */
  expireWatches(kind?: ResourceName): void {
    const status = failure(410, this.goneReason, "The resourceVersion for the provided watch is too old.");
    for (const w of this.openWatches(kind)) {
      w.write(JSON.stringify({ type: "ERROR", object: status }));
      w.end(false);
    }
  }

  /** End open watch streams. Default abrupt: the TCP connection is reset mid-response, as on a network drop. */
  breakWatches(opts: { kind?: ResourceName; graceful?: boolean } = {}): number {
    return this.endWatches(opts.kind, !opts.graceful);
  }

  /** Write a raw line (e.g. malformed JSON, or an event with a bogus object) to open watches of a kind. */
  injectRawWatchLine(kind: ResourceName, line: string): number {
    const ws = this.openWatches(kind);
    for (const w of ws) w.write(line);
    return ws.length;
  }

  /** Send a BOOKMARK at the current RV to every watch that allowed bookmarks. */
  sendBookmarks(kind?: ResourceName): void {
    for (const w of this.openWatches(kind)) w.bookmark(this.rv);
  }

  openWatchCount(kind?: ResourceName): number {
    return this.openWatches(kind).length;
  }

  /** Resolves once at least `count` watches of `kind` are open; rejects after `timeoutMs`. */
  async waitForWatches(kind: ResourceName, count = 1, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.openWatchCount(kind) < count) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} ${kind} watch(es); open: ${this.openWatchCount(kind)}`);
      await Bun.sleep(5);
    }
  }

  /**
   * Simulate an outage. "refuse" closes the listener (connections are refused, open ones reset);
   * "unavailable" keeps listening but answers 503. Coming back up reuses the same port.
   */
  async setDown(down: boolean, mode: "refuse" | "unavailable" = "refuse"): Promise<void> {
    if (down) {
      if (this.downMode) return;
      this.downMode = mode;
      this.endWatches(undefined, true);
      if (mode === "refuse") await this.closeListener();
    } else {
      const was = this.downMode;
      this.downMode = undefined;
      if (was === "refuse") await this.listen(this.portNumber);
    }
  }

  // ---- HTTP -------------------------------------------------------------

  private async listen(port: number): Promise<void> {
    const { tls } = this.opts;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.serveNode(req, res);
    const server = tls
      ? https.createServer(
          { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}), requestCert: !!tls.requireClientCert, rejectUnauthorized: !!tls.requireClientCert },
          handler,
        )
      : http.createServer(handler);
    // Watches may sit silent for minutes; no socket or request timeouts.
    server.timeout = 0;
    server.requestTimeout = 0;
    server.on("connection", (s: Socket) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, this.opts.hostname ?? "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    const addr = server.address();
    this.portNumber = addr && typeof addr === "object" ? addr.port : port;
  }

  private async closeListener(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    await closed;
  }

  private respond(body: unknown, code = 200, headers: Record<string, string> = {}): Reply {
    return {
      status: code,
      headers: { "content-type": "application/json", "cache-control": "no-cache, private", ...headers },
      body: JSON.stringify(body),
    };
  }

  private async serveNode(nreq: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      for await (const c of nreq) chunks.push(c as Buffer);
    } catch {
      return void res.destroy();
    }
    const headers = new Headers();
    for (const [k, v] of Object.entries(nreq.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
    const req = new Request(new URL(nreq.url ?? "/", "http://fake-apiserver").href, { method: nreq.method ?? "GET", headers });
    const body = chunks.length ? Buffer.concat(chunks).toString("utf8") : nreq.method === "GET" || nreq.method === "HEAD" ? undefined : "";
    let out: Outcome;
    try {
      out = await this.handle(req, body, this.userOf(nreq));
    } catch (e) {
      out = this.respond(failure(500, "InternalError", `Internal error occurred: ${(e as Error).message}`), 500);
    }
    if (res.destroyed) return;
    if ("watch" in out) return out.watch(res);
    res.writeHead(out.status, { ...out.headers, "content-length": String(typeof out.body === "string" ? Buffer.byteLength(out.body) : out.body.length) });
    res.end(out.body);
  }

  /** The authenticated user as RBAC messages name it: the client certificate's CN when there is one. */
  private userOf(nreq: http.IncomingMessage): string {
    if (this.opts.token !== undefined) return "test-user";
    try {
      const cn = (nreq.socket as Partial<TLSSocket>).getPeerCertificate?.()?.subject?.CN;
      if (typeof cn === "string" && cn) return cn;
    } catch {
      // not a TLS socket, or no certificate presented
    }
    return "system:anonymous";
  }

  private async handle(req: Request, body: string | undefined, user: string): Promise<Outcome> {
    const url = new URL(req.url);
    const rec: RecordedRequest = {
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(req.headers),
      at: Date.now(),
    };
    if (body !== undefined) rec.body = body;
    this.requests.push(rec);
    try {
      if (this.downMode) throw fail(503, "ServiceUnavailable", "the server is currently unable to handle the request", { retryAfterSeconds: 1 });
      const f = this.failures.find((x) => x.left > 0 && (!x.match || x.match(rec)));
      if (f) {
        f.left--;
        const reason = { 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout" }[f.status] ?? "Unknown";
        const headers: Record<string, string> = f.retryAfterSeconds !== undefined ? { "retry-after": String(f.retryAfterSeconds) } : {};
        return this.respond(failure(f.status, reason, `injected failure (${f.status})`), f.status, headers);
      }
      if (this.opts.token !== undefined && req.headers.get("authorization") !== `Bearer ${this.opts.token}`) {
        throw fail(401, "Unauthorized", "Unauthorized");
      }
      return await this.route(req, url, body, user);
    } catch (e) {
      if (e instanceof FakeApiError) {
        const h: Record<string, string> = e.status.details?.retryAfterSeconds ? { "retry-after": String(e.status.details.retryAfterSeconds) } : {};
        return this.respond(e.status, e.code, h);
      }
      throw e;
    }
  }

  private async route(req: Request, url: URL, body: string | undefined, user: string): Promise<Outcome> {
    const segs = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const q = url.searchParams;
    const p = url.pathname;
    if (p === "/version" || p === "/version/") return this.respond(this.version());
    if (p === "/openapi/v2") {
      if (this.opts.openapi === false) throw pathNotFound();
      const pb = (req.headers.get("accept") ?? "").includes("protobuf");
      const ct = pb ? "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" : "application/json";
      return { status: 200, headers: { "content-type": ct }, body: openApiV2(str(this.version().gitVersion), pb) };
    }
    if (p === "/openapi/v3" || p.startsWith("/openapi/v3/")) return this.openApi(p.slice("/openapi/v3".length).replace(/^\//, ""));
    if (["/healthz", "/livez", "/readyz"].includes(p)) return { status: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body: "ok" };
    let rest: string[];
    let group = "";
    let version = "v1";
    if (segs[0] === "api") {
      if (segs.length === 1) return this.respond(this.apiVersions());
      if (segs[1] !== "v1") throw pathNotFound();
      if (segs.length === 2) return this.respond(this.resourceList("", "v1"));
      rest = segs.slice(2);
    } else if (segs[0] === "apis") {
      if (segs.length === 1) return this.respond(this.groupList());
      group = segs[1]!;
      const g = this.groups().find((x) => x.name === group);
      if (!g) throw pathNotFound();
      if (segs.length === 2) return this.respond({ kind: "APIGroup", apiVersion: "v1", ...g });
      version = segs[2]!;
      if (!g.versions.some((v) => v.version === version)) throw pathNotFound();
      if (segs.length === 3) return this.respond(this.resourceList(group, version));
      rest = segs.slice(3);
    } else throw pathNotFound();

    const t = this.parseTarget(group, version, rest);
    const verb = this.verbOf(req.method, t, q);
    if (!t.def.verbs.includes(verb)) throw methodNotAllowed();
    const deny = this.forbidden.get(t.def.name);
    if (deny && (deny === "all" || deny.has(verb))) {
      throw forbidden(t.def, verb, user, t.ns, t.name);
    }
    const dryRun = q.getAll("dryRun").includes("All");
    switch (verb) {
      case "watch":
        return this.handleWatch(req, t, q);
      case "get": {
        const o = this.lookup(t.def, t.ns, t.name!);
        if (!o) throw notFound(t.def, t.name!);
        const table = this.negotiate(req);
        if (table) return this.respondTable(t.def, [o], { resourceVersion: String(this.rv) }, table);
        return this.respond(this.withType(t.def, o));
      }
      case "list":
        return this.handleList(req, t, q);
      case "create": {
        const o = this.doCreate(t.def, t.ns, this.parseBody(body, req), dryRun);
        return this.respond(this.withType(t.def, o), 201);
      }
      case "update": {
        const existed = !!this.lookup(t.def, t.ns, t.name!);
        const o = this.doUpdate(t.def, t.ns, t.name!, this.parseBody(body, req), t.sub, dryRun);
        return this.respond(this.withType(t.def, o), existed ? 200 : 201);
      }
      case "patch": {
        const r = this.doPatch(t.def, t.ns, t.name!, t.sub, req.headers.get("content-type") ?? "", body ?? "", q);
        return this.respond(this.withType(t.def, r.obj), r.created ? 201 : 200);
      }
      case "delete": {
        const opts = body ? this.parseBody(body, req) : undefined;
        const r = this.doDelete(t.def, t.ns, t.name!, opts, dryRun);
        return this.respond(r.pending ? this.withType(t.def, r.obj) : success(t.def, t.name!, str(metaOf(r.obj).uid)));
      }
      case "deletecollection": {
        const filter = this.filterFrom(t, q);
        const b = this.bucket(t.def.name);
        const victims = b.sortedKeys().map((k) => b.objects.get(k)!).filter((o) => matches(filter, o));
        for (const o of victims) this.doDelete(t.def, str(metaOf(o).namespace) || undefined, str(metaOf(o).name), undefined, dryRun);
        return this.respond(this.listBody(t.def, victims, { resourceVersion: String(this.rv) }));
      }
      default:
        throw methodNotAllowed();
    }
  }

  private parseTarget(group: string, version: string, rest: string[]): Target {
    let legacyWatch = false;
    if (rest[0] === "watch") {
      legacyWatch = true;
      rest = rest.slice(1);
    }
    let ns: string | undefined;
    // /namespaces/{ns}/{resource}... is a namespaced collection; /namespaces/{name}[/status] is the Namespace itself.
    if (rest[0] === "namespaces" && rest.length >= 3 && rest[2] !== "status" && rest[2] !== "finalize") {
      ns = rest[1];
      rest = rest.slice(2);
    }
    if (rest.length === 0 || rest.length > 3) throw pathNotFound();
    const def = RESOURCE_NAMES.map((n) => RESOURCES[n]).find(
      (d) => d.name === rest[0] && d.group === group && d.version === version && this.served[d.name],
    );
    if (!def) throw pathNotFound();
    if (ns !== undefined && !def.namespaced) throw pathNotFound();
    const sub = rest[2];
    if (sub !== undefined && !def.subresources.includes(sub)) throw pathNotFound();
    const t: Target = { def, legacyWatch };
    if (ns !== undefined) t.ns = ns;
    if (rest[1] !== undefined) t.name = rest[1];
    if (sub !== undefined) t.sub = sub;
    return t;
  }

  private verbOf(method: string, t: Target, q: URLSearchParams): string {
    const watch = t.legacyWatch || parseBool(q.get("watch")) === true;
    // Single objects of namespaced kinds only exist under /namespaces/{ns}/.
    if (t.name !== undefined && t.def.namespaced && t.ns === undefined) throw pathNotFound();
    // Writes to a namespaced kind need a namespace in the path.
    const nsOk = !t.def.namespaced || t.ns !== undefined;
    switch (method) {
      case "GET":
        if (t.sub && watch) throw methodNotAllowed();
        return watch ? "watch" : t.name !== undefined ? "get" : "list";
      case "POST":
        if (t.name !== undefined || !nsOk) throw methodNotAllowed();
        return "create";
      case "PUT":
        if (t.name === undefined) throw methodNotAllowed();
        return "update";
      case "PATCH":
        if (t.name === undefined) throw methodNotAllowed();
        return "patch";
      case "DELETE":
        if (t.sub) throw methodNotAllowed();
        if (t.name === undefined && !nsOk) throw methodNotAllowed();
        return t.name !== undefined ? "delete" : "deletecollection";
      default:
        throw methodNotAllowed();
    }
  }

  private parseBody(body: string | undefined, req: Request): Obj {
    const ct = (req.headers.get("content-type") ?? "application/json").split(";")[0]!.trim();
    if (ct !== "application/json" && ct !== "application/yaml" && ct !== "*/*") {
      throw fail(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`);
    }
    let v: unknown;
    try {
      v = ct === "application/yaml" ? parseYaml(body ?? "") : JSON.parse(body ?? "");
    } catch (e) {
      throw badRequest(`the object provided is unrecognized: ${(e as Error).message}`);
    }
    if (!isObj(v)) throw badRequest("the object provided is unrecognized");
    return v;
  }

  /** JSON unless the client asked for a Table first; 406 when nothing acceptable is offered. */
  private negotiate(req: Request): TableOpts | undefined {
    const accept = req.headers.get("accept");
    if (!accept) return undefined;
    for (const range of accept.split(",")) {
      const [type, ...params] = range.split(";").map((s) => s.trim());
      const p = Object.fromEntries(params.map((x) => x.split("=").map((s) => s.trim()) as [string, string]));
      if (type !== "application/json" && type !== "application/*" && type !== "*/*") continue;
      if (p.as === undefined) return undefined;
      if (p.as === "Table" && p.g === "meta.k8s.io" && (p.v === "v1" || p.v === "v1beta1")) {
        const include = new URL(req.url).searchParams.get("includeObject");
        return { version: p.v, include: include === "None" || include === "Object" ? include : "Metadata" };
      }
    }
    throw fail(406, "NotAcceptable", `only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io`);
  }

  private servedDefs(): ResourceDef[] {
    return RESOURCE_NAMES.filter((n) => this.served[n]).map((n) => RESOURCES[n]);
  }

  private openApiDoc(gvPathWanted: string): string | undefined {
    const defs = this.servedDefs().filter((d) => gvPath(d) === gvPathWanted);
    return defs.length ? JSON.stringify(openApiDocument(defs, str(this.version().gitVersion))) : undefined;
  }

  private openApi(sub: string): Reply {
    if (this.opts.openapi === false) throw pathNotFound();
    if (sub === "") {
      const hash = (gv: string) => {
        const doc = this.openApiDoc(gv.includes("/") ? `apis/${gv}` : `api/${gv}`) ?? "";
        return new Bun.CryptoHasher("sha512").update(doc).digest("hex").toUpperCase();
      };
      return this.respond(openApiIndex(this.servedDefs(), hash));
    }
    const doc = this.openApiDoc(sub);
    if (doc === undefined) throw pathNotFound();
    return { status: 200, headers: { "content-type": "application/json", "cache-control": "no-cache, private" }, body: doc };
  }

  private version(): Obj {
    const gitVersion = this.opts.gitVersion ?? "v1.31.0";
    const [, major = "1", minor = "31"] = gitVersion.match(/^v(\d+)\.(\d+)/) ?? [];
    return {
      major,
      minor,
      gitVersion,
      gitCommit: "0000000000000000000000000000000000000000",
      gitTreeState: "clean",
      buildDate: "2024-08-13T00:00:00Z",
      goVersion: "go1.22.5",
      compiler: "gc",
      platform: "linux/amd64",
    };
  }

  private apiVersions(): Obj {
    return {
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `${this.opts.hostname ?? "127.0.0.1"}:${this.portNumber}` }],
    };
  }

  private groups(): Array<{ name: string; versions: Array<{ groupVersion: string; version: string }>; preferredVersion: { groupVersion: string; version: string } }> {
    const out = new Map<string, { groupVersion: string; version: string }>();
    for (const n of RESOURCE_NAMES) {
      const d = RESOURCES[n];
      if (d.group && this.served[n]) out.set(d.group, { groupVersion: apiVersionOf(d), version: d.version });
    }
    return [...out].map(([name, gv]) => ({ name, versions: [gv], preferredVersion: gv }));
  }

  private groupList(): Obj {
    return { kind: "APIGroupList", apiVersion: "v1", groups: this.groups() };
  }

  private resourceList(group: string, version: string): Obj {
    const resources: Obj[] = [];
    for (const n of RESOURCE_NAMES) {
      const d = RESOURCES[n];
      if (d.group !== group || d.version !== version || !this.served[n]) continue;
      const r: Obj = { name: d.name, singularName: d.singular, namespaced: d.namespaced, kind: d.kind, verbs: d.verbs };
      if (d.shortNames.length) r.shortNames = d.shortNames;
      if (d.categories.length) r.categories = d.categories;
      resources.push(r);
      for (const s of d.subresources) {
        const verbs = s === "finalize" ? ["update"] : ["get", "patch", "update"];
        resources.push({ name: `${d.name}/${s}`, singularName: "", namespaced: d.namespaced, kind: d.kind, verbs });
      }
    }
    return { kind: "APIResourceList", apiVersion: "v1", groupVersion: group ? `${group}/${version}` : version, resources };
  }

  // ---- storage ------------------------------------------------------------

  private bucket(kind: ResourceName): Bucket {
    return this.buckets.get(kind)!;
  }

  private lookup(def: ResourceDef, ns: string | undefined, name: string): Obj | undefined {
    return this.bucket(def.name).objects.get(keyOf(def, ns, name));
  }

  /** Stored objects carry no kind/apiVersion (list items omit them for built-in kinds); this adds them. */
  withType(def: ResourceDef, o: Obj): Obj {
    return { ...typeMeta(def), ...o };
  }

  private clone(def: ResourceDef, o: Obj): KubeObject {
    return structuredClone(this.withType(def, o)) as KubeObject;
  }

  private keyFor(def: ResourceDef, o: Obj): string {
    const m = metaOf(o);
    return keyOf(def, str(m.namespace) || undefined, str(m.name));
  }

  private commit(def: ResourceDef, type: EventType, obj: Obj, prev?: Obj): void {
    const b = this.bucket(def.name);
    const key = this.keyFor(def, obj);
    if (type === "DELETED") b.objects.delete(key);
    else b.objects.set(key, obj);
    if (type !== "MODIFIED") b.invalidate();
    const ev: HistoryEvent = { rv: this.rv, type, obj };
    if (prev) ev.prev = prev;
    b.history.push(ev);
    if (b.history.length > this.historyLimit + 1024) {
      // Trim in batches so a full history does not cost a shift per write.
      const drop = b.history.length - this.historyLimit;
      b.compactedThrough = Math.max(b.compactedThrough, b.history[drop - 1]!.rv);
      b.history = b.history.slice(drop);
    }
    for (const w of b.watches) w.deliver(ev);
    const ready = this.rvWaiters.filter((w) => w.rv <= this.rv);
    if (ready.length) {
      this.rvWaiters = this.rvWaiters.filter((w) => w.rv > this.rv);
      for (const w of ready) w.resolve();
    }
  }

  /** The oldest RV a watch or a continue token may still refer to for this kind. */
  private oldestKept(b: Bucket): number {
    const overflow = b.history.length - this.historyLimit;
    return overflow > 0 ? Math.max(b.compactedThrough, b.history[overflow - 1]!.rv) : b.compactedThrough;
  }

  private gone(message: string): FakeApiError {
    return fail(410, this.goneReason, message);
  }

  private checkMeta(def: ResourceDef, body: Obj): void {
    if (body.apiVersion !== undefined && body.apiVersion !== apiVersionOf(def)) {
      throw badRequest(`the API version in the data (${str(body.apiVersion)}) does not match the expected API version (${apiVersionOf(def)})`);
    }
    if (body.kind !== undefined && body.kind !== def.kind) {
      throw badRequest(`the kind in the data (${str(body.kind)}) does not match the expected kind (${def.kind})`);
    }
  }

  private doCreate(def: ResourceDef, urlNs: string | undefined, body: Obj, dryRun: boolean): Obj {
    this.checkMeta(def, body);
    const { kind: _k, apiVersion: _a, metadata: rawMeta, ...rest } = body;
    const m: Obj = isObj(rawMeta) ? { ...rawMeta } : {};
    let name = str(m.name);
    if (!name && str(m.generateName)) name = str(m.generateName) + Math.random().toString(36).slice(2, 7).padEnd(5, "x");
    if (!name) throw invalid(def, "", "metadata.name", "FieldValueRequired", "Required value: name or generateName is required");
    const nameRe = def.name === "services" ? /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/ : /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
    if (!nameRe.test(name)) {
      throw invalid(def, name, "metadata.name", "FieldValueInvalid", `Invalid value: "${name}": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'`);
    }
    let ns: string | undefined;
    if (def.namespaced) {
      const bodyNs = str(m.namespace) || undefined;
      if (urlNs && bodyNs && urlNs !== bodyNs) throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      ns = urlNs ?? bodyNs ?? "default";
    }
    if (this.lookup(def, ns, name)) throw alreadyExists(def, name);
    const { name: _n, namespace: _ns, uid: _u, resourceVersion: _rv, generation: _g, creationTimestamp: _c, deletionTimestamp: _d, ...otherMeta } = m;
    const metadata: Obj = { name };
    if (ns !== undefined) metadata.namespace = ns;
    metadata.uid = crypto.randomUUID();
    metadata.resourceVersion = "";
    if (def.generation) metadata.generation = 1;
    metadata.creationTimestamp = nowStamp();
    Object.assign(metadata, otherMeta);
    const o: Obj = structuredClone({ metadata, ...rest });
    if (this.opts.defaulting !== false) applyDefaults(def, o, this.alloc);
    if (dryRun) {
      delete (o.metadata as Obj).resourceVersion;
      return o;
    }
    if (ns !== undefined && !this.lookup(RESOURCES.namespaces, undefined, ns)) {
      // The real NamespaceLifecycle admission refuses this; by default the fake creates the
      // namespace instead, so tests need not, while kubectl (which looks the namespace up
      // after a NotFound) still sees a consistent cluster.
      if (this.opts.strictNamespaces) throw notFound(RESOURCES.namespaces, ns);
      this.doCreate(RESOURCES.namespaces, undefined, { metadata: { name: ns } }, false);
    }
    (o.metadata as Obj).resourceVersion = String(++this.rv);
    this.commit(def, "ADDED", o);
    return o;
  }

  private doUpdate(def: ResourceDef, urlNs: string | undefined, name: string, body: Obj, sub: string | undefined, dryRun: boolean): Obj {
    this.checkMeta(def, body);
    const m = metaOf(body);
    if (str(m.name) && m.name !== name) throw badRequest(`the name of the object (${str(m.name)}) does not match the name on the URL (${name})`);
    const ns = def.namespaced ? (urlNs ?? (str(m.namespace) || "default")) : undefined;
    if (def.namespaced && str(m.namespace) && m.namespace !== ns) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    const existing = this.lookup(def, ns, name);
    if (!existing) {
      if (sub || !def.createOnUpdate) throw notFound(def, name);
      return this.doCreate(def, ns, { ...body, metadata: { ...m, name } }, dryRun);
    }
    if (str(m.resourceVersion) && m.resourceVersion !== metaOf(existing).resourceVersion) throw conflict(def, name);
    const { kind: _k, apiVersion: _a, ...next } = body;
    return this.commitUpdate(def, existing, this.scopeToSubresource(def, existing, next, sub), dryRun);
  }

  /** Status writes touch only status; main-resource writes cannot change status when a status subresource exists. */
  private scopeToSubresource(def: ResourceDef, existing: Obj, next: Obj, sub: string | undefined): Obj {
    if (sub === "status") {
      const out: Obj = { ...existing };
      if (next.status === undefined) delete out.status;
      else out.status = next.status;
      return out;
    }
    if (def.subresources.includes("status")) {
      const out: Obj = { ...next };
      if (existing.status === undefined) delete out.status;
      else out.status = existing.status;
      return out;
    }
    return next;
  }

  private commitUpdate(def: ResourceDef, existing: Obj, next: Obj, dryRun: boolean): Obj {
    const old = metaOf(existing);
    const m: Obj = { ...metaOf(next) };
    // Identity and server-owned fields come from the stored object.
    for (const k of ["name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]) {
      if (old[k] === undefined) delete m[k];
      else m[k] = old[k];
    }
    m.resourceVersion = old.resourceVersion;
    const o: Obj = structuredClone({ ...next, metadata: m });
    // From here on, metadata edits must land on the clone that gets stored.
    const om = o.metadata as Obj;
    if (def.name === "services") {
      const oldIp = str((existing.spec as Obj | undefined)?.clusterIP);
      const newIp = str((o.spec as Obj | undefined)?.clusterIP);
      if (newIp && oldIp && newIp !== oldIp) {
        throw invalid(def, str(om.name), "spec.clusterIPs[0]", "FieldValueInvalid", `Invalid value: []string{"${newIp}"}: may not change once set`);
      }
    }
    if (this.opts.defaulting !== false) applyDefaults(def, o, this.alloc, existing);
    if (def.generation) {
      const strip = (x: Obj) => {
        const { metadata: _m, status: _s, ...r } = x;
        return r;
      };
      if (!deepEqual(strip(existing), strip(o))) om.generation = Number(old.generation ?? 0) + 1;
    }
    // A write that changes nothing keeps the RV and emits no event, like etcd's GuaranteedUpdate.
    if (deepEqual(existing, o)) return existing;
    if (dryRun) return o;
    const finalizers = Array.isArray(om.finalizers) ? om.finalizers : [];
    if (old.deletionTimestamp && finalizers.length === 0) {
      om.resourceVersion = String(++this.rv);
      this.commit(def, "DELETED", o, existing);
      if (def.name === "services") this.alloc.release(existing);
      return o;
    }
    om.resourceVersion = String(++this.rv);
    this.commit(def, "MODIFIED", o, existing);
    return o;
  }

  private doPatch(
    def: ResourceDef,
    ns: string | undefined,
    name: string,
    sub: string | undefined,
    contentType: string,
    body: string,
    q: URLSearchParams,
  ): { obj: Obj; created: boolean } {
    const ct = contentType.split(";")[0]!.trim();
    const dryRun = q.getAll("dryRun").includes("All");
    const parse = (): unknown => {
      try {
        return ct === "application/apply-patch+yaml" ? parseYaml(body) : JSON.parse(body);
      } catch (e) {
        throw badRequest(`error decoding patch: ${(e as Error).message}`);
      }
    };
    const accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];
    if (!def.custom) accepted.push("application/strategic-merge-patch+json");
    if (!accepted.includes(ct)) {
      throw fail(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: ${accepted.join(", ")}`);
    }
    const patch = parse();
    const existing = this.lookup(def, def.namespaced ? (ns ?? "default") : undefined, name);
    const appliedKey = `${def.name}/${keyOf(def, def.namespaced ? (ns ?? "default") : undefined, name)}/${q.get("fieldManager") ?? ""}`;
    if (ct === "application/apply-patch+yaml") {
      if (!q.get("fieldManager")) throw badRequest("PATCH, application/apply-patch+yaml requests must include a fieldManager query parameter");
      if (!isObj(patch)) throw badRequest("error decoding patch: apply patches must be objects");
      if (!existing) {
        if (sub) throw notFound(def, name);
        const m = { ...metaOf(patch), name };
        const obj = this.doCreate(def, ns, { ...patch, metadata: m }, dryRun);
        if (!dryRun) this.applied.set(appliedKey, patch);
        return { obj, created: true };
      }
    }
    if (!existing) throw notFound(def, name);
    const current = this.withType(def, existing);
    let patched: unknown;
    try {
      if (ct === "application/merge-patch+json") patched = jsonMergePatch(current, patch);
      else if (ct === "application/json-patch+json") patched = jsonPatch(current, patch);
      else if (ct === "application/apply-patch+yaml") {
        // Server-side apply, approximated: drop what this manager applied last time and no
        // longer does, then merge in its new configuration. No conflict detection.
        const prev = this.applied.get(appliedKey);
        const schema = def.custom ? {} : def.smp;
        let base: Obj = current;
        if (prev) base = strategicMergePatch(base, applyRemovals(prev, patch as Obj, schema), schema);
        patched = def.custom ? jsonMergePatch(base, patch) : strategicMergePatch(base, patch, schema);
        if (!dryRun) this.applied.set(appliedKey, patch as Obj);
      } else patched = strategicMergePatch(current, patch, def.smp);
    } catch (e) {
      if (e instanceof PatchError) throw fail(422, "Invalid", e.message);
      throw e;
    }
    if (!isObj(patched)) throw badRequest("the patch produced a non-object");
    this.checkMeta(def, patched);
    const pm = metaOf(patched);
    if (pm.name !== name) throw badRequest(`the name of the object (${str(pm.name)}) does not match the name on the URL (${name})`);
    if (str(pm.resourceVersion) && pm.resourceVersion !== metaOf(existing).resourceVersion) throw conflict(def, name);
    const { kind: _k, apiVersion: _a, ...next } = patched;
    return { obj: this.commitUpdate(def, existing, this.scopeToSubresource(def, existing, next, sub), dryRun), created: false };
  }

  private doDelete(def: ResourceDef, urlNs: string | undefined, name: string, opts: Obj | undefined, dryRun: boolean): { obj: Obj; pending: boolean } {
    const ns = def.namespaced ? (urlNs ?? "default") : undefined;
    const existing = this.lookup(def, ns, name);
    if (!existing) throw notFound(def, name);
    const m = metaOf(existing);
    const pre = isObj(opts?.preconditions) ? opts.preconditions : {};
    if (pre.uid !== undefined && pre.uid !== m.uid) {
      throw fail(409, "Conflict", `Precondition failed: UID in precondition: ${str(pre.uid)}, UID in object meta: ${str(m.uid)}`);
    }
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== m.resourceVersion) {
      throw fail(409, "Conflict", `Precondition failed: ResourceVersion in precondition: ${str(pre.resourceVersion)}, ResourceVersion in meta: ${str(m.resourceVersion)}`);
    }
    if (dryRun) return { obj: existing, pending: false };
    const finalizers = Array.isArray(m.finalizers) ? m.finalizers : [];
    if (finalizers.length > 0) {
      // Finalizers keep the object around, marked for deletion, until they are removed.
      if (m.deletionTimestamp) return { obj: existing, pending: true };
      const o: Obj = { ...existing, metadata: { ...m, deletionTimestamp: nowStamp(), deletionGracePeriodSeconds: 0, resourceVersion: String(++this.rv) } };
      this.commit(def, "MODIFIED", o, existing);
      return { obj: o, pending: true };
    }
    if (def.name === "namespaces") {
      // Stands in for the namespace controller, which empties a namespace before it goes.
      for (const n of RESOURCE_NAMES) {
        const d = RESOURCES[n];
        if (!d.namespaced) continue;
        for (const o of [...this.bucket(n).objects.values()]) {
          if (metaOf(o).namespace === name) this.forceDelete(d, o);
        }
      }
    }
    this.forceDelete(def, existing);
    return { obj: existing, pending: false };
  }

  private forceDelete(def: ResourceDef, existing: Obj): void {
    const prefix = `${def.name}/${this.keyFor(def, existing)}/`;
    for (const k of this.applied.keys()) if (k.startsWith(prefix)) this.applied.delete(k);
    const gone: Obj = { ...existing, metadata: { ...metaOf(existing), resourceVersion: String(++this.rv) } };
    this.commit(def, "DELETED", gone, existing);
    if (def.name === "services") this.alloc.release(existing);
  }

  // ---- list / watch -------------------------------------------------------

  private filterFrom(t: Target, q: URLSearchParams): Filter {
    const f: Filter = { labels: [], fields: [] };
    if (t.ns !== undefined) f.ns = t.ns;
    try {
      f.labels = parseLabelSelector(q.get("labelSelector") ?? "");
      f.fields = parseFieldSelector(q.get("fieldSelector") ?? "", t.def.fieldLabels);
    } catch (e) {
      throw badRequest((e as Error).message);
    }
    // A watch on a named object (GET .../services/x?watch=1) is a name-filtered watch.
    if (t.name !== undefined) f.fields.push({ field: "metadata.name", negate: false, value: t.name });
    return f;
  }

  /** The stored objects as they were at `rv`, rebuilt by undoing later events; undefined when nothing changed. */
  private snapshotAt(b: Bucket, rv: number): Map<string, Obj> | undefined {
    let i = b.history.length;
    while (i > 0 && b.history[i - 1]!.rv > rv) i--;
    if (i === b.history.length) return undefined;
    const snap = new Map(b.objects);
    for (let j = b.history.length - 1; j >= i; j--) {
      const ev = b.history[j]!;
      const key = this.keyFor(b.def, ev.obj);
      if (ev.type === "ADDED") snap.delete(key);
      else snap.set(key, ev.prev!);
    }
    return snap;
  }

  private parseRv(v: string, what = "resourceVersion"): number {
    if (!/^\d+$/.test(v)) throw badRequest(`${what}: Invalid value: "${v}": must be a non-negative integer`);
    return Number(v);
  }

  /** Like the cacher: wait up to 3 s for a future RV, then answer 504 "Too large resource version". */
  private async awaitRv(rv: number): Promise<void> {
    if (rv <= this.rv) return;
    await new Promise<void>((resolve) => {
      const w = { rv, resolve };
      this.rvWaiters.push(w);
      setTimeout(() => {
        this.rvWaiters = this.rvWaiters.filter((x) => x !== w);
        resolve();
      }, 3000);
    });
    if (rv > this.rv) throw tooLargeRv(rv, this.rv);
  }

  private async handleList(req: Request, t: Target, q: URLSearchParams): Promise<Reply> {
    const table = this.negotiate(req);
    const b = this.bucket(t.def.name);
    const filter = this.filterFrom(t, q);
    const limitRaw = q.get("limit");
    const limit = limitRaw ? this.parseRv(limitRaw, "limit") : 0;
    const rvParam = q.get("resourceVersion") ?? "";
    const match = q.get("resourceVersionMatch") ?? "";
    const cont = q.get("continue") ?? "";
    let atRv = this.rv;
    let start = "";
    if (match && !cont) {
      if (!rvParam) throw invalidListOptions("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided");
      if (match === "Exact" && rvParam === "0") throw invalidListOptions("resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"');
      if (match !== "Exact" && match !== "NotOlderThan") {
        throw badRequest(`resourceVersionMatch: Unsupported value: "${match}": supported values: "Exact", "NotOlderThan"`);
      }
    }
    if (cont) {
      if (rvParam) throw badRequest("specifying resource version is not allowed when using continue");
      let token: { v?: string; rv?: number; start?: string };
      try {
        token = JSON.parse(Buffer.from(cont, "base64").toString("utf8"));
      } catch {
        throw badRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
      }
      if (token.v !== "meta.k8s.io/v1" || typeof token.rv !== "number" || typeof token.start !== "string") {
        throw badRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
      }
      if (token.rv < this.oldestKept(b)) {
        throw this.gone(
          "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to get a consistent list.",
        );
      }
      atRv = token.rv;
      start = token.start;
    } else if (match === "Exact") {
      const n = this.parseRv(rvParam);
      await this.awaitRv(n);
      if (n < this.oldestKept(b)) throw this.gone(`too old resource version: ${n} (${this.oldestKept(b)})`);
      atRv = n;
    } else if (rvParam) {
      await this.awaitRv(this.parseRv(rvParam));
      atRv = this.rv;
    }
    const snap = atRv === this.rv ? undefined : this.snapshotAt(b, atRv);
    const objects = snap ?? b.objects;
    const keys = snap ? [...snap.keys()].sort(cmp) : b.sortedKeys();
    // Namespaced keys are "ns/name", so one namespace is a contiguous range.
    const prefix = t.def.namespaced && filter.ns !== undefined ? `${filter.ns}/` : "";
    let i = lowerBound(keys, start > prefix ? start : prefix);
    const items: Obj[] = [];
    let last = "";
    for (; i < keys.length; i++) {
      const k = keys[i]!;
      if (prefix && !k.startsWith(prefix)) break;
      if (limit > 0 && items.length >= limit) break;
      const o = objects.get(k)!;
      last = k;
      if (matches(filter, o)) items.push(o);
    }
    const listMeta: Obj = { resourceVersion: String(atRv) };
    const more = i < keys.length && (!prefix || keys[i]!.startsWith(prefix));
    if (limit > 0 && more) {
      listMeta.continue = Buffer.from(JSON.stringify({ v: "meta.k8s.io/v1", rv: atRv, start: `${last}\u0000` })).toString("base64");
      if (filter.labels.length === 0 && filter.fields.length === 0) {
        let remaining = 0;
        for (let j = i; j < keys.length && (!prefix || keys[j]!.startsWith(prefix)); j++) remaining++;
        listMeta.remainingItemCount = remaining;
      }
    }
    if (table) return this.respondTable(t.def, items, listMeta, table);
    return this.respond(this.listBody(t.def, items, listMeta));
  }

  private listBody(def: ResourceDef, items: Obj[], metadata: Obj): Obj {
    // Built-in list items carry no kind/apiVersion; custom resource items do.
    return { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata, items: def.custom ? items.map((o) => this.withType(def, o)) : items };
  }

  private toTable(def: ResourceDef, items: Obj[], metadata: Obj, opts: TableOpts): Obj {
    const now = Date.now();
    return {
      kind: "Table",
      apiVersion: `meta.k8s.io/${opts.version}`,
      metadata,
      columnDefinitions: def.columns,
      rows: items.map((o) => {
        const row: Obj = { cells: def.cells(o, now) };
        if (opts.include === "Metadata") row.object = { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata };
        else if (opts.include === "Object") row.object = this.withType(def, o);
        return row;
      }),
    };
  }

  private respondTable(def: ResourceDef, items: Obj[], metadata: Obj, opts: TableOpts): Reply {
    return this.respond(this.toTable(def, items, metadata, opts), 200, { "content-type": `application/json;as=Table;v=${opts.version};g=meta.k8s.io` });
  }

  eventLine(def: ResourceDef, type: string, o: Obj, table: TableOpts | undefined): string {
    const object = table ? this.toTable(def, [o], { resourceVersion: str(metaOf(o).resourceVersion) }, table) : this.withType(def, o);
    return JSON.stringify({ type, object });
  }

  private async handleWatch(req: Request, t: Target, q: URLSearchParams): Promise<Outcome> {
    const table = this.negotiate(req);
    const b = this.bucket(t.def.name);
    const filter = this.filterFrom(t, q);
    const bookmarks = parseBool(q.get("allowWatchBookmarks")) === true;
    const sendInitial = parseBool(q.get("sendInitialEvents"));
    const timeoutRaw = q.get("timeoutSeconds");
    const timeout = timeoutRaw ? this.parseRv(timeoutRaw, "timeoutSeconds") : 0;
    const rvParam = q.get("resourceVersion") ?? "";
    if (sendInitial !== undefined && q.get("resourceVersionMatch") !== "NotOlderThan") {
      throw invalidListOptions("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
    }
    if (sendInitial !== undefined && !bookmarks) {
      throw invalidListOptions("allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks to true");
    }
    const from = rvParam === "" ? 0 : this.parseRv(rvParam);
    // RV unset or "0" means "current state first", as does an explicit sendInitialEvents=true.
    const initial = sendInitial ?? (from === 0);
    if (from > 0) await this.awaitRv(from);
    if (from > 0 && !initial && from < this.oldestKept(b) && this.staleWatch === "status") {
      throw this.gone(`too old resource version: ${from} (${this.oldestKept(b)})`);
    }
    if (this.downMode) throw fail(503, "ServiceUnavailable", "the server is currently unable to handle the request");
    const ct = table ? `application/json;as=Table;v=${table.version};g=meta.k8s.io` : "application/json";
    // Everything below runs synchronously, so no change can slip between replay and registration.
    return {
      watch: (res) => {
        res.writeHead(200, { "content-type": ct, "cache-control": "no-cache, private" });
        res.flushHeaders();
        const watch = new Watch(this, b, filter, bookmarks, table, res);
        if (from > 0 && !initial && from < this.oldestKept(b)) {
          // The apiserver's answer to a too-old RV: a 200 stream holding one ERROR event.
          const status = failure(410, this.goneReason, `too old resource version: ${from} (${this.oldestKept(b)})`);
          watch.write(JSON.stringify({ type: "ERROR", object: status }));
          return watch.end(false);
        }
        if (initial) {
          for (const k of b.sortedKeys()) {
            const o = b.objects.get(k)!;
            if (matches(filter, o)) watch.write(this.eventLine(t.def, "ADDED", o, table));
          }
          if (sendInitial) watch.bookmark(this.rv, true);
        } else {
          // An unset RV with sendInitialEvents=false starts from now, with no replay.
          const after = from === 0 ? this.rv : from;
          for (const ev of b.history) if (ev.rv > after) watch.deliver(ev);
        }
        b.watches.add(watch);
        res.on("close", () => watch.detach());
        if (timeout > 0) watch.timer = setTimeout(() => watch.end(false), timeout * 1000);
      },
    };
  }

  private openWatches(kind?: ResourceName): Watch[] {
    const out: Watch[] = [];
    for (const [n, b] of this.buckets) if (!kind || n === kind) out.push(...b.watches);
    return out;
  }

  private endWatches(kind: ResourceName | undefined, abrupt: boolean): number {
    const ws = this.openWatches(kind);
    for (const w of ws) w.end(abrupt);
    return ws.length;
  }
}
