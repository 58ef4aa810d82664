// LIST then WATCH one resource, keeping a local cache that survives outages.
// - LIST is paginated (limit/continue); WATCH resumes from the last
//   resourceVersion with bookmarks, and the server's timeoutSeconds ends each
//   watch quietly (restarted without backoff).
// - 410 Gone, as an HTTP status or an ERROR event, means our resourceVersion
//   was compacted: LIST again. The new list replaces the cache, so a delete
//   made while we were away is not missed.
// - Anything else (connection refused, 5xx, a dropped stream) reconnects with
//   capped exponential backoff and jitter; the cache keeps serving meanwhile.
// - A malformed line or object is logged and skipped; the watch goes on.
// - An object that fails `validate` is rejected alone: dropped from the cache
//   (a stale copy would keep serving what the source no longer says), logged
//   once per reason, and listed in the status until it is fixed or deleted.
import type { Logger } from "../log.ts";
import type { KubeEndpoint } from "./endpoint.ts";
import { BodyTooLargeError, kubeFetch, KubeHttpError, readJsonLimited } from "./http.ts";
import { NdjsonSplitter } from "./ndjson.ts";

export interface ObjectMeta {
  name: string;
  namespace?: string;
  resourceVersion?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface KubeObject {
  metadata: ObjectMeta;
  [k: string]: unknown;
}

export type SyncState = "listing" | "synced" | "reconnecting";

export interface ReflectorStats {
  resource: string;
  state: SyncState;
  since: string;
  resourceVersion: string;
  objects: number;
  relists: number;
  watchRestarts: number;
  events: number;
  malformed: number;
  lastError: string;
  /** objects rejected by `validate` since start (each new reason counts) */
  rejectedTotal: number;
  /** LIST pages, watch events or objects past the bounds (maxListBytes, maxEventBytes, maxObjects) */
  oversized: number;
  /** objects rejected now */
  rejectedNow: number;
  /** the objects rejected now, at most MAX_LISTED_REJECTIONS of them */
  rejected: Array<{ object: string; reason: string }>;
}

/** rejections kept for the status; the count of all of them is exact */
export const MAX_LISTED_REJECTIONS = 100;

export interface ReflectorOptions {
  endpoint: KubeEndpoint;
  /** collection path, e.g. /api/v1/services */
  path: string;
  resource: string;
  log: Logger;
  onChange: () => void;
  pageSize?: number;
  /** server-side watch timeout; each watch gets a random value in [t, 2t) like client-go */
  watchTimeoutSeconds?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** bytes one LIST page may have; past it the page size is cut, down to one object (default 64 MiB) */
  maxListBytes?: number;
  /** bytes one watch event may have; past it the watch is restarted (with backoff) and the event counted (default 4 MiB) */
  maxEventBytes?: number;
  /** objects the cache may hold; past it a LIST fails and new objects from a watch are dropped, counted (default 100,000) */
  maxObjects?: number;
  /** the kind's schema; returns why an object is unusable ("field: message") */
  validate?: (obj: KubeObject) => string | undefined;
}

export function objectKey(o: { metadata: ObjectMeta }): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

function wellFormed(o: unknown): o is KubeObject {
  const m = (o as KubeObject | null)?.metadata;
  return !!m && typeof m === "object" && typeof m.name === "string" && m.name.length > 0 && m.name.length <= 253 && (m.namespace === undefined || (typeof m.namespace === "string" && m.namespace.length <= 63));
}

class GoneError extends Error {}

export class Reflector {
  readonly cache = new Map<string, KubeObject>();
  private rv = "";
  private state: SyncState = "listing";
  private since = new Date();
  private stopped = false;
  private abort = new AbortController();
  private wake?: () => void;
  private loop?: Promise<void>;
  private readonly stats = { relists: 0, watchRestarts: 0, events: 0, malformed: 0, lastError: "", rejectedTotal: 0, oversized: 0 };
  /** key → reason, for the objects the schema refused */
  readonly rejected = new Map<string, string>();
  /** resolves after the first complete LIST */
  readonly synced: Promise<void>;
  private markSynced!: () => void;

  constructor(private readonly o: ReflectorOptions) {
    this.synced = new Promise((r) => (this.markSynced = r));
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  status(): ReflectorStats {
    return {
      resource: this.o.resource,
      state: this.state,
      since: this.since.toISOString(),
      resourceVersion: this.rv,
      objects: this.cache.size,
      ...this.stats,
      rejectedNow: this.rejected.size,
      rejected: [...this.rejected].slice(0, MAX_LISTED_REJECTIONS).map(([object, reason]) => ({ object, reason })),
    };
  }

  private setState(s: SyncState): void {
    if (s === this.state) return;
    this.state = s;
    this.since = new Date();
  }

  private async run(): Promise<void> {
    const b = this.o.backoff ?? { initialMs: 500, maxMs: 30_000 };
    let delay = b.initialMs;
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.list();
          needList = false;
          delay = b.initialMs;
        }
        await this.watch();
        // a watch the server ended on its timeout: go again at once
        this.stats.watchRestarts++;
        delay = b.initialMs;
        continue;
      } catch (e) {
        if (this.stopped) break;
        if (e instanceof GoneError) {
          this.o.log.info("resourceVersion expired, listing again", { resource: this.o.resource, resourceVersion: this.rv });
          needList = true;
          continue;
        }
        const why = e instanceof Error ? e.message : String(e);
        if (why !== this.stats.lastError || this.state !== "reconnecting") {
          this.o.log.warn("apiserver unreachable, serving cached state", { resource: this.o.resource, error: why, retryMs: delay, cached: this.cache.size });
        }
        this.stats.lastError = why;
        this.setState(this.cache.size || this.rv ? "reconnecting" : "listing");
      }
      await this.sleep(Math.round(delay * (0.75 + Math.random() * 0.5)));
      delay = Math.min(delay * 2, b.maxMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  private async list(): Promise<void> {
    const next = new Map<string, KubeObject>();
    const rejected = new Map<string, string>();
    let cont = "";
    let rv = "";
    let limit = this.o.pageSize ?? 500;
    const maxBytes = this.o.maxListBytes ?? 64 * 1024 * 1024;
    const maxObjects = this.o.maxObjects ?? 100_000;
    for (let page = 0; ; page++) {
      const q = new URLSearchParams({ limit: String(limit) });
      if (cont) q.set("continue", cont);
      const res = await kubeFetch(this.o.endpoint, `${this.o.path}?${q}`, { signal: this.abort.signal, timeoutMs: 60_000 });
      if (res.status === 410) {
        // the continue token expired mid-list: start over
        cont = "";
        next.clear();
        rejected.clear();
        continue;
      }
      if (!res.ok) throw await KubeHttpError.from(res, `list ${this.o.resource}`);
      let body: { metadata?: { resourceVersion?: string; continue?: string }; items?: unknown[] };
      try {
        body = (await readJsonLimited(res, maxBytes)) as typeof body;
      } catch (e) {
        if (!(e instanceof BodyTooLargeError)) throw e;
        this.stats.oversized++;
        // the same page again, smaller (the continue token stays valid)
        if (limit === 1) throw new Error(`list ${this.o.resource}: one object is larger than ${maxBytes} bytes (agent.metadata.kubernetes.maxListPageMiB)`);
        limit = Math.max(1, Math.floor(limit / 8));
        this.o.log.warn("list page too large, asking for fewer objects per page", { resource: this.o.resource, maxBytes, pageSize: limit });
        continue;
      }
      if (body === null || typeof body !== "object") throw new Error(`list ${this.o.resource}: the body is not a list`);
      for (const item of body.items ?? []) {
        if (!wellFormed(item)) {
          this.stats.malformed++;
          this.o.log.warn("skipping malformed object in list", { resource: this.o.resource, error: "object without metadata.name" });
          continue;
        }
        const bad = this.o.validate?.(item);
        if (bad) rejected.set(objectKey(item), bad);
        else next.set(objectKey(item), item);
      }
      if (next.size + rejected.size > maxObjects) {
        this.stats.oversized++;
        throw new Error(`list ${this.o.resource}: more than ${maxObjects} objects (agent.metadata.kubernetes.maxObjects)`);
      }
      rv = typeof body.metadata?.resourceVersion === "string" ? body.metadata.resourceVersion.slice(0, 128) : "";
      cont = typeof body.metadata?.continue === "string" ? body.metadata.continue : "";
      if (!cont) break;
      if (page > 100_000) throw new Error("list did not end");
    }
    let removed = 0;
    for (const k of this.cache.keys()) if (!next.has(k)) removed++;
    const first = this.stats.relists === 0 && this.state === "listing";
    this.cache.clear();
    for (const [k, v] of next) this.cache.set(k, v);
    const before = new Map(this.rejected);
    this.rejected.clear();
    for (const [k, why] of rejected) this.reject(k, why, before.get(k));
    this.rv = rv;
    this.stats.relists++;
    this.setState("synced");
    if (!first) this.o.log.info("relisted", { resource: this.o.resource, objects: next.size, removedWhileAway: removed, resourceVersion: rv });
    this.markSynced();
    this.o.onChange();
  }

  /** records a rejection; logs it unless it is the one already known */
  private reject(key: string, why: string, known: string | undefined): void {
    this.rejected.set(key, why);
    if (known === why) return;
    this.stats.rejectedTotal++;
    this.o.log.warn("rejected object from the metadata source", { resource: this.o.resource, object: key, reason: why });
  }

  private async watch(): Promise<void> {
    const t = this.o.watchTimeoutSeconds ?? 300;
    const q = new URLSearchParams({
      watch: "1",
      resourceVersion: this.rv,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(t + Math.floor(Math.random() * t)),
    });
    const res = await kubeFetch(this.o.endpoint, `${this.o.path}?${q}`, { signal: this.abort.signal, stream: true });
    if (res.status === 410) {
      await res.body?.cancel();
      throw new GoneError();
    }
    if (!res.ok || !res.body) throw await KubeHttpError.from(res, `watch ${this.o.resource}`);
    this.setState("synced");
    const maxEvent = this.o.maxEventBytes ?? 4 * 1024 * 1024;
    const splitter = new NdjsonSplitter(maxEvent);
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        const lines = done ? splitter.end() : splitter.push(value);
        for (const line of lines) {
          if (!line.ok && line.oversized) {
            // skipping it would leave the cache behind the source: resume from
            // the last good resourceVersion, with backoff, and say why
            this.stats.oversized++;
            throw new Error(`watch ${this.o.resource}: an event larger than ${maxEvent} bytes (agent.metadata.kubernetes.maxEventKiB)`);
          }
          if (!line.ok) {
            this.stats.malformed++;
            this.o.log.warn("skipping malformed watch event", { resource: this.o.resource, error: line.error, line: line.line });
            continue;
          }
          this.apply(line.value);
        }
        if (done) return;
      }
    } finally {
      reader.releaseLock();
    }
  }

  private apply(ev: unknown): void {
    const e = ev as { type?: string; object?: any };
    if (e?.type === "ERROR") {
      const code = e.object?.code;
      if (code === 410) throw new GoneError();
      throw new Error(`watch error event: ${e.object?.message ?? JSON.stringify(e.object)}`);
    }
    if (e?.type === "BOOKMARK") {
      const rv = e.object?.metadata?.resourceVersion;
      if (typeof rv === "string" && rv.length <= 128) this.rv = rv;
      return;
    }
    if (e?.type !== "ADDED" && e?.type !== "MODIFIED" && e?.type !== "DELETED") {
      this.stats.malformed++;
      this.o.log.warn("skipping watch event of unknown type", { resource: this.o.resource, type: String(e?.type) });
      return;
    }
    if (!wellFormed(e.object)) {
      this.stats.malformed++;
      this.o.log.warn("skipping malformed object in watch event", { resource: this.o.resource, type: e.type, error: "object without metadata.name" });
      return;
    }
    const obj = e.object;
    const key = objectKey(obj);
    this.stats.events++;
    if (typeof obj.metadata.resourceVersion === "string" && obj.metadata.resourceVersion.length <= 128) this.rv = obj.metadata.resourceVersion;
    const bad = e.type === "DELETED" ? undefined : this.o.validate?.(obj);
    if (e.type === "DELETED" || bad) {
      const had = this.cache.delete(key);
      const known = this.rejected.get(key);
      if (bad) this.reject(key, bad, known);
      else this.rejected.delete(key);
      if (had) this.o.onChange();
      return;
    }
    this.rejected.delete(key);
    if (!this.cache.has(key) && this.cache.size >= (this.o.maxObjects ?? 100_000)) {
      this.stats.oversized++;
      this.o.log.warn("object dropped: the cache is full", { resource: this.o.resource, object: key, maxObjects: this.o.maxObjects ?? 100_000 });
      return;
    }
    this.cache.set(key, obj);
    this.o.onChange();
  }
}
