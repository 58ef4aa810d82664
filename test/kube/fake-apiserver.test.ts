// The fake kube-apiserver, exercised with plain fetch (not the product's
// client) and with the real kubectl, so the fake can be trusted as a stand-in
// for kube-apiserver in the list/watch client's tests.

import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeApiServer, findKubectl, kubectl, type FakeApiServerOptions } from "./fake-apiserver/index.ts";

type J = Record<string, any>;

const servers: FakeApiServer[] = [];
const streams: WatchStream[] = [];

afterEach(async () => {
  for (const w of streams.splice(0)) w.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const api = await FakeApiServer.start(opts);
  servers.push(api);
  return api;
}

async function call(api: FakeApiServer, path: string, init: RequestInit = {}): Promise<{ status: number; body: J; headers: Headers }> {
  const res = await fetch(api.url + path, { ...init, signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {}, headers: res.headers };
}

const json = (method: string, body: unknown, contentType = "application/json"): RequestInit => ({
  method,
  headers: { "content-type": contentType },
  body: JSON.stringify(body),
});

/** Reads a watch response line by line with per-read deadlines. */
class WatchStream {
  private buf = "";
  private pending: ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]> | undefined;
  private readonly dec = new TextDecoder();
  private constructor(
    readonly res: Response,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly abort: AbortController,
  ) {}

  static async open(api: FakeApiServer, path: string, headers: Record<string, string> = {}): Promise<WatchStream> {
    const abort = new AbortController();
    const res = await fetch(api.url + path, { headers, signal: abort.signal });
    const w = new WatchStream(res, res.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>, abort);
    streams.push(w);
    return w;
  }

  /** The next line, or null when the server ended the stream cleanly; throws on a reset or timeout. */
  async line(timeoutMs = 3000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nl = this.buf.indexOf("\n");
      if (nl >= 0) {
        const l = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return l;
      }
      this.pending ??= this.reader.read();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), Math.max(0, deadline - Date.now()))));
      const r = await Promise.race([this.pending, timeout]).finally(() => clearTimeout(timer));
      if (r === "timeout") throw new Error("timed out waiting for a watch line");
      this.pending = undefined;
      if (r.done) {
        const rest = this.buf;
        this.buf = "";
        return rest === "" ? null : rest;
      }
      this.buf += this.dec.decode(r.value, { stream: true });
    }
  }

  async event(timeoutMs = 3000): Promise<J> {
    const l = await this.line(timeoutMs);
    if (l === null) throw new Error("watch ended");
    return JSON.parse(l);
  }

  /** Asserts nothing arrives for a while. */
  async quiet(ms = 150): Promise<void> {
    await expect(this.line(ms)).rejects.toThrow("timed out");
  }

  close(): void {
    this.abort.abort();
  }
}

const svc = (name: string, ns = "default", port = 80): J => ({
  metadata: { name, namespace: ns, labels: { app: name } },
  spec: { selector: { app: name }, ports: [{ name: "http", port, targetPort: 8080 }] },
});

const slice = (name: string, service: string, ips: string[], ns = "default"): J => ({
  metadata: { name, namespace: ns, labels: { "kubernetes.io/service-name": service } },
  addressType: "IPv4",
  ports: [{ name: "http", port: 8080 }],
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
});

describe("discovery", () => {
  test("serves /version, /api, /api/v1, /apis and group resource lists", async () => {
    const api = await start();
    expect((await call(api, "/version")).body).toMatchObject({ major: "1", gitVersion: expect.stringMatching(/^v1\./) });
    expect((await call(api, "/api")).body).toMatchObject({ kind: "APIVersions", versions: ["v1"] });
    const core = (await call(api, "/api/v1")).body;
    expect(core).toMatchObject({ kind: "APIResourceList", groupVersion: "v1" });
    const names = core.resources.map((r: J) => r.name);
    expect(names).toEqual(expect.arrayContaining(["services", "endpoints", "nodes", "namespaces", "services/status"]));
    expect(core.resources.find((r: J) => r.name === "services")).toMatchObject({ kind: "Service", namespaced: true, shortNames: ["svc"] });
    expect(core.resources.find((r: J) => r.name === "nodes").namespaced).toBe(false);
    const groups = (await call(api, "/apis")).body;
    expect(groups.kind).toBe("APIGroupList");
    expect(groups.groups.map((g: J) => g.name)).toEqual(["discovery.k8s.io"]);
    const disc = (await call(api, "/apis/discovery.k8s.io/v1")).body;
    expect(disc.resources[0]).toMatchObject({ name: "endpointslices", kind: "EndpointSlice", namespaced: true });
  });

  test("an unserved group answers 404 with a NotFound Status, like MetaServer or an old cluster", async () => {
    const api = await start({ serveEndpointSlices: false });
    api.create("endpointslices", slice("a", "a", ["10.0.0.1"]));
    for (const path of ["/apis/discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1/endpointslices", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=1"]) {
      const r = await call(api, path);
      expect(r.status).toBe(404);
      expect(r.body).toEqual({
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: "the server could not find the requested resource",
        reason: "NotFound",
        details: {},
        code: 404,
      });
    }
    expect((await call(api, "/apis")).body.groups).toEqual([]);
    expect((await call(api, "/apis/networking.istio.io/v1beta1/destinationrules")).status).toBe(404);
    api.setServed("endpointslices", true);
    expect((await call(api, "/apis/discovery.k8s.io/v1/endpointslices")).body.items).toHaveLength(1);
  });
});

describe("list", () => {
  test("returns a typed list whose items carry their own metadata", async () => {
    const api = await start();
    api.create("services", svc("a", "ns1"));
    api.create("services", svc("b", "ns2"));
    api.create("endpoints", { metadata: { name: "a", namespace: "ns1" }, subsets: [{ addresses: [{ ip: "10.0.0.1" }], ports: [{ port: 80 }] }] });
    const r = await call(api, "/api/v1/services", { headers: { accept: "application/json" } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    expect(r.body).toMatchObject({ kind: "ServiceList", apiVersion: "v1", metadata: { resourceVersion: api.resourceVersion } });
    expect(r.body.items.map((i: J) => `${i.metadata.namespace}/${i.metadata.name}`)).toEqual(["ns1/a", "ns2/b"]);
    const item = r.body.items[0];
    // Like the real server, items of built-in lists carry no kind/apiVersion.
    expect(item.kind).toBeUndefined();
    expect(item.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(item.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(item.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(item.spec.clusterIP).toMatch(/^10\.9[6-9]\./);
    expect(item.spec.ports[0]).toEqual({ name: "http", port: 80, targetPort: 8080, protocol: "TCP" });

    const ns = await call(api, "/api/v1/namespaces/ns2/services");
    expect(ns.body.items.map((i: J) => i.metadata.name)).toEqual(["b"]);
    const one = await call(api, "/api/v1/namespaces/ns1/services/a");
    expect(one.body).toMatchObject({ kind: "Service", apiVersion: "v1", metadata: { name: "a" } });
    const eps = await call(api, "/api/v1/endpoints");
    expect(eps.body).toMatchObject({ kind: "EndpointsList", items: [{ subsets: [{ ports: [{ port: 80, protocol: "TCP" }] }] }] });
    const missing = await call(api, "/api/v1/namespaces/ns1/services/zzz");
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ kind: "Status", reason: "NotFound", message: 'services "zzz" not found', details: { name: "zzz", kind: "services" }, code: 404 });
    const nodes = await call(api, "/api/v1/nodes");
    expect(nodes.body).toMatchObject({ kind: "NodeList", items: [] });
  });

  test("label and field selectors filter, malformed ones answer 400", async () => {
    const api = await start();
    api.create("endpointslices", slice("a-1", "a", ["10.0.0.1"]));
    api.create("endpointslices", slice("a-2", "a", ["10.0.0.2"]));
    api.create("endpointslices", slice("b-1", "b", ["10.0.1.1"]));
    const base = "/apis/discovery.k8s.io/v1/endpointslices";
    const names = async (q: string) => (await call(api, `${base}?${q}`)).body.items.map((i: J) => i.metadata.name);
    expect(await names("labelSelector=kubernetes.io%2Fservice-name%3Da")).toEqual(["a-1", "a-2"]);
    expect(await names("labelSelector=kubernetes.io%2Fservice-name+in+(b,c)")).toEqual(["b-1"]);
    expect(await names("labelSelector=kubernetes.io%2Fservice-name!%3Da")).toEqual(["b-1"]);
    expect(await names("labelSelector=!kubernetes.io%2Fservice-name")).toEqual([]);
    expect(await names("fieldSelector=metadata.name%3Da-2")).toEqual(["a-2"]);
    const bad = await call(api, `${base}?labelSelector=a%20%3D%3D%3D`);
    expect(bad.status).toBe(400);
    expect(bad.body.reason).toBe("BadRequest");
    expect((await call(api, `${base}?fieldSelector=spec.nope%3Dx`)).status).toBe(400);
  });

  test("limit/continue pages a consistent snapshot; an expired token answers 410", async () => {
    const api = await start();
    for (let i = 0; i < 25; i++) api.create("services", svc(`s${String(i).padStart(2, "0")}`));
    const first = (await call(api, "/api/v1/namespaces/default/services?limit=10")).body;
    expect(first.items).toHaveLength(10);
    expect(first.metadata.remainingItemCount).toBe(15);
    expect(typeof first.metadata.continue).toBe("string");
    const snapshotRv = first.metadata.resourceVersion;
    // Changes after the first page must not show through later pages.
    api.delete("services", "default", "s15");
    api.create("services", svc("s99"));
    const seen: string[] = first.items.map((i: J) => i.metadata.name);
    let cont = first.metadata.continue;
    let pages = 1;
    while (cont) {
      const page = (await call(api, `/api/v1/namespaces/default/services?limit=10&continue=${encodeURIComponent(cont)}`)).body;
      expect(page.metadata.resourceVersion).toBe(snapshotRv);
      seen.push(...page.items.map((i: J) => i.metadata.name));
      cont = page.metadata.continue;
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `s${String(i).padStart(2, "0")}`));

    const again = (await call(api, "/api/v1/services?limit=5")).body;
    // Compaction only hurts snapshots older than the compacted revision, as with etcd.
    api.create("services", svc("late"));
    api.compact();
    const expired = await call(api, `/api/v1/services?limit=5&continue=${encodeURIComponent(again.metadata.continue)}`);
    expect(expired.status).toBe(410);
    expect(expired.body).toMatchObject({ kind: "Status", status: "Failure", reason: "Expired", code: 410 });
    expect(expired.body.message).toContain("continue parameter is too old");
    expect((await call(api, "/api/v1/services?limit=5&continue=garbage")).status).toBe(400);
  });

  test("resourceVersionMatch=Exact lists an older snapshot until it is compacted away", async () => {
    const api = await start();
    api.create("services", svc("a"));
    const rv = api.resourceVersion;
    api.create("services", svc("b"));
    api.delete("services", "default", "a");
    const exact = (await call(api, `/api/v1/services?resourceVersion=${rv}&resourceVersionMatch=Exact`)).body;
    expect(exact.metadata.resourceVersion).toBe(rv);
    expect(exact.items.map((i: J) => i.metadata.name)).toEqual(["a"]);
    const notOlder = (await call(api, `/api/v1/services?resourceVersion=${rv}&resourceVersionMatch=NotOlderThan`)).body;
    expect(notOlder.items.map((i: J) => i.metadata.name)).toEqual(["b"]);
    const bad = await call(api, "/api/v1/services?resourceVersionMatch=Exact");
    expect(bad.status).toBe(422);
    expect(bad.body.message).toContain("resourceVersionMatch is forbidden unless resourceVersion is provided");
    api.compact();
    expect((await call(api, `/api/v1/services?resourceVersion=${rv}&resourceVersionMatch=Exact`)).status).toBe(410);
  });

  test("server-side Table printing, as kubectl asks for it", async () => {
    const api = await start();
    api.create("services", { ...svc("web"), spec: { ...svc("web").spec, type: "NodePort" } });
    const r = await call(api, "/api/v1/services", {
      headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json" },
    });
    expect(r.headers.get("content-type")).toBe("application/json;as=Table;v=v1;g=meta.k8s.io");
    expect(r.body.kind).toBe("Table");
    expect(r.body.columnDefinitions.map((c: J) => c.name)).toEqual(["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]);
    const row = r.body.rows[0];
    expect(row.cells.slice(0, 5)).toEqual(["web", "NodePort", api.get("services", "default", "web")!.spec.clusterIP, "<none>", expect.stringMatching(/^80:3\d{4}\/TCP$/)]);
    expect(row.object).toMatchObject({ kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: { name: "web", namespace: "default" } });
    const none = await call(api, "/api/v1/services", { headers: { accept: "application/vnd.kubernetes.protobuf" } });
    expect(none.status).toBe(406);
  });

  test("a list of 5000 services (with 5000 slices stored) takes well under a second", async () => {
    const api = await start();
    for (let i = 0; i < 5000; i++) {
      api.create("services", svc(`svc-${i}`, `ns-${i % 50}`));
      api.create("endpointslices", slice(`svc-${i}-abc`, `svc-${i}`, [`10.${(i >> 8) & 255}.${i & 255}.1`, `10.${(i >> 8) & 255}.${i & 255}.2`], `ns-${i % 50}`));
    }
    const t0 = performance.now();
    const all = (await call(api, "/api/v1/services")).body;
    const elapsed = performance.now() - t0;
    expect(all.items).toHaveLength(5000);
    expect(elapsed).toBeLessThan(1000);
    let n = 0;
    let cont = "";
    const t1 = performance.now();
    do {
      const page = (await call(api, `/apis/discovery.k8s.io/v1/endpointslices?limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`)).body;
      n += page.items.length;
      cont = page.metadata.continue ?? "";
    } while (cont);
    expect(n).toBe(5000);
    expect(performance.now() - t1).toBeLessThan(2000);
  });
});

describe("watch", () => {
  test("streams ADDED/MODIFIED/DELETED after the list's resourceVersion as chunked NDJSON", async () => {
    const api = await start();
    api.create("services", svc("old"));
    const list = (await call(api, "/api/v1/namespaces/default/services")).body;
    const w = await WatchStream.open(api, `/api/v1/namespaces/default/services?watch=1&resourceVersion=${list.metadata.resourceVersion}`, {
      accept: "application/json",
    });
    expect(w.res.status).toBe(200);
    expect(w.res.headers.get("content-type")).toBe("application/json");
    expect(w.res.headers.get("transfer-encoding")).toBe("chunked");
    await w.quiet();
    const created = api.create("services", svc("web"));
    const added = await w.event();
    expect(added).toMatchObject({ type: "ADDED", object: { kind: "Service", apiVersion: "v1", metadata: { name: "web" } } });
    expect(added.object.metadata.resourceVersion).toBe(created.metadata.resourceVersion);
    api.patch("services", "default", "web", { metadata: { labels: { tier: "edge" } } });
    const modified = await w.event();
    expect(modified.type).toBe("MODIFIED");
    expect(modified.object.metadata.labels.tier).toBe("edge");
    api.create("services", svc("other", "elsewhere"));
    api.delete("services", "default", "web");
    const deleted = await w.event();
    expect(deleted.type).toBe("DELETED");
    // The deletion gets its own, newer resourceVersion.
    expect(Number(deleted.object.metadata.resourceVersion)).toBeGreaterThan(Number(modified.object.metadata.resourceVersion));
    expect(deleted.object.metadata.resourceVersion).toBe(api.resourceVersion);
    await w.quiet();
  });

  test("without a resourceVersion the current state arrives first as ADDED events", async () => {
    const api = await start();
    api.create("nodes", { metadata: { name: "edge-2" } });
    api.create("nodes", { metadata: { name: "edge-1" } });
    const w = await WatchStream.open(api, "/api/v1/nodes?watch=true");
    expect((await w.event()).object.metadata.name).toBe("edge-1");
    expect((await w.event()).object.metadata.name).toBe("edge-2");
    await w.quiet();
    api.create("nodes", { metadata: { name: "edge-3" } });
    expect(await w.event()).toMatchObject({ type: "ADDED", object: { kind: "Node", metadata: { name: "edge-3" } } });
  });

  test("resuming from an older resourceVersion replays the missed events in order", async () => {
    const api = await start();
    const a = api.create("services", svc("a"));
    api.create("services", svc("b"));
    api.update("services", { ...svc("a", "default", 81) });
    api.delete("services", "default", "b");
    const w = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${a.metadata.resourceVersion}`);
    const got = [await w.event(), await w.event(), await w.event()].map((e) => `${e.type} ${e.object.metadata.name}`);
    expect(got).toEqual(["ADDED b", "MODIFIED a", "DELETED b"]);
    await w.quiet();
  });

  test("a future resourceVersion waits for it to exist, then answers 504 Too large", async () => {
    const api = await start();
    const next = Number(api.resourceVersion) + 1;
    const w = WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${next}`);
    await Bun.sleep(100);
    // Events strictly after the requested RV are delivered: "a" is the RV itself.
    api.create("services", svc("a"));
    api.create("services", svc("b"));
    expect((await (await w).event()).object.metadata.name).toBe("b");
    const t0 = Date.now();
    const r = await call(api, `/api/v1/services?watch=1&resourceVersion=${next + 100}`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2900);
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ reason: "Timeout", details: { causes: [{ reason: "ResourceVersionTooLarge" }], retryAfterSeconds: 1 } });
  });

  test("label-selected watches see objects entering and leaving the selection", async () => {
    const api = await start();
    api.create("endpointslices", slice("a-1", "a", ["10.0.0.1"]));
    const rv = api.resourceVersion;
    const w = await WatchStream.open(
      api,
      `/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=1&resourceVersion=${rv}&labelSelector=kubernetes.io%2Fservice-name%3Da`,
    );
    api.create("endpointslices", slice("b-1", "b", ["10.0.1.1"]));
    api.patch("endpointslices", "default", "a-1", { metadata: { labels: { "kubernetes.io/service-name": "b" } } });
    const left = await w.event();
    expect(left.type).toBe("DELETED");
    expect(left.object.metadata.labels["kubernetes.io/service-name"]).toBe("a");
    api.patch("endpointslices", "default", "b-1", { metadata: { labels: { "kubernetes.io/service-name": "a" } } });
    expect(await w.event()).toMatchObject({ type: "ADDED", object: { kind: "EndpointSlice", metadata: { name: "b-1" } } });
  });

  test("bookmarks carry only the resourceVersion and go only to watches that allow them", async () => {
    const api = await start({ bookmarkIntervalMs: 100 });
    api.create("services", svc("a"));
    const rv = api.resourceVersion;
    const withBm = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true`);
    const without = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${rv}`);
    api.create("endpoints", { metadata: { name: "x", namespace: "default" } });
    const bm = await withBm.event(2000);
    expect(bm).toEqual({ type: "BOOKMARK", object: { kind: "Service", apiVersion: "v1", metadata: { resourceVersion: api.resourceVersion } } });
    await without.quiet(300);
    api.sendBookmarks("services");
    expect((await withBm.event()).type).toBe("BOOKMARK");
  });

  test("sendInitialEvents streams the state, then a bookmark marking its end", async () => {
    const api = await start({ bookmarkIntervalMs: 0 });
    api.create("services", svc("a"));
    api.create("services", svc("b"));
    const w = await WatchStream.open(api, "/api/v1/services?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true");
    expect((await w.event()).type).toBe("ADDED");
    expect((await w.event()).type).toBe("ADDED");
    expect(await w.event()).toMatchObject({
      type: "BOOKMARK",
      object: { metadata: { resourceVersion: api.resourceVersion, annotations: { "k8s.io/initial-events-end": "true" } } },
    });
  });

  test("a too-old resourceVersion gets a 200 stream whose only event is an ERROR 410", async () => {
    const api = await start();
    const a = api.create("services", svc("a"));
    api.create("services", svc("b"));
    api.compact();
    const w = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${a.metadata.resourceVersion}`);
    expect(w.res.status).toBe(200);
    const ev = await w.event();
    expect(ev).toEqual({
      type: "ERROR",
      object: {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: `too old resource version: ${a.metadata.resourceVersion} (${api.resourceVersion})`,
        reason: "Expired",
        code: 410,
      },
    });
    expect(await w.line()).toBeNull();
    // The current resourceVersion is still fine.
    const ok = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${api.resourceVersion}`);
    await ok.quiet();
  });

  test("in staleWatch 'status' mode the same request gets a plain HTTP 410", async () => {
    const api = await start({ staleWatch: "status", goneReason: "Gone" });
    const a = api.create("services", svc("a"));
    api.create("services", svc("b"));
    api.compact();
    const r = await call(api, `/api/v1/services?watch=1&resourceVersion=${a.metadata.resourceVersion}`);
    expect(r.status).toBe(410);
    expect(r.body).toMatchObject({ kind: "Status", reason: "Gone", code: 410 });
  });

  test("historyLimit bounds how far back a watch may resume", async () => {
    const api = await start({ historyLimit: 3 });
    const first = api.create("services", svc("s0"));
    for (let i = 1; i < 6; i++) api.create("services", svc(`s${i}`));
    const w = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${first.metadata.resourceVersion}`);
    expect((await w.event()).object.code).toBe(410);
    const recent = Number(api.resourceVersion) - 2;
    const ok = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${recent}`);
    expect((await ok.event()).object.metadata.name).toBe("s4");
  });

  test("compact can expire open watches with an ERROR 410 event", async () => {
    const api = await start();
    const w = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${api.resourceVersion}`);
    await api.waitForWatches("services");
    api.compact({ expireOpenWatches: true });
    expect(await w.event()).toMatchObject({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } });
    expect(await w.line()).toBeNull();
    expect(api.openWatchCount()).toBe(0);
  });

  test("timeoutSeconds ends the stream cleanly", async () => {
    const api = await start();
    const t0 = Date.now();
    const w = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${api.resourceVersion}&timeoutSeconds=1`);
    expect(await w.line(3000)).toBeNull();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(api.openWatchCount("services")).toBe(0);
  });

  test("breakWatches resets connections abruptly, or ends them gracefully on request", async () => {
    const api = await start();
    const w = await WatchStream.open(api, "/api/v1/services?watch=1");
    await api.waitForWatches("services");
    expect(api.breakWatches()).toBe(1);
    await expect(w.line()).rejects.toThrow();
    const g = await WatchStream.open(api, "/api/v1/endpoints?watch=1");
    await api.waitForWatches("endpoints");
    api.breakWatches({ kind: "endpoints", graceful: true });
    expect(await g.line()).toBeNull();
  });

  test("client disconnects are noticed and the watch is dropped", async () => {
    const api = await start();
    const w = await WatchStream.open(api, "/api/v1/services?watch=1");
    await api.waitForWatches("services");
    w.close();
    const deadline = Date.now() + 3000;
    while (api.openWatchCount() > 0 && Date.now() < deadline) {
      api.create("services", svc(`s${Date.now()}`));
      await Bun.sleep(20);
    }
    expect(api.openWatchCount()).toBe(0);
  });

  test("injectRawWatchLine writes garbage the client must survive", async () => {
    const api = await start();
    const w = await WatchStream.open(api, `/api/v1/services?watch=1&resourceVersion=${api.resourceVersion}`);
    await api.waitForWatches("services");
    expect(api.injectRawWatchLine("services", "{not json")).toBe(1);
    api.injectRawWatchLine("services", JSON.stringify({ type: "MODIFIED", object: { kind: "Service" } }));
    expect(await w.line()).toBe("{not json");
    expect(JSON.parse((await w.line())!)).toEqual({ type: "MODIFIED", object: { kind: "Service" } });
    api.create("services", svc("a"));
    expect((await w.event()).type).toBe("ADDED");
  });

  test("big objects arrive whole even when split across many reads", async () => {
    const api = await start();
    const w = await WatchStream.open(api, `/apis/discovery.k8s.io/v1/endpointslices?watch=1&resourceVersion=${api.resourceVersion}`);
    await api.waitForWatches("endpointslices");
    const ips = Array.from({ length: 1000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    api.create("endpointslices", slice("big", "big", ips));
    const ev = await w.event();
    expect(ev.object.endpoints).toHaveLength(1000);
    expect(ev.object.endpoints[999].addresses).toEqual(["10.0.3.231"]);
  });

  test("sendInitialEvents without bookmarks is rejected like the real validation", async () => {
    const api = await start();
    const r = await call(api, "/api/v1/services?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan");
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ reason: "Invalid", details: { kind: "ListOptions", causes: [{ field: "allowWatchBookmarks" }] } });
  });

  test("a watch on one named object only sees that object", async () => {
    const api = await start();
    const w = await WatchStream.open(api, `/api/v1/namespaces/default/services/b?watch=1&resourceVersion=${api.resourceVersion}`);
    api.create("services", svc("a"));
    api.create("services", svc("b"));
    expect((await w.event()).object.metadata.name).toBe("b");
  });
});

describe("writes", () => {
  test("create, conflict, no-op update, patches, status and delete follow the real semantics", async () => {
    const api = await start();
    const base = "/api/v1/namespaces/default/services";
    const created = await call(api, base, json("POST", { apiVersion: "v1", kind: "Service", ...svc("web") }));
    expect(created.status).toBe(201);
    expect(created.body.metadata.resourceVersion).toBe(api.resourceVersion);
    const dup = await call(api, base, json("POST", svc("web")));
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ reason: "AlreadyExists", message: 'services "web" already exists' });
    const invalid = await call(api, base, json("POST", { metadata: {} }));
    expect(invalid.status).toBe(422);
    expect(invalid.body.reason).toBe("Invalid");
    const wrongNs = await call(api, base, json("POST", svc("x", "other")));
    expect(wrongNs.status).toBe(400);

    const rv1 = created.body.metadata.resourceVersion;
    const same = await call(api, `${base}/web`, json("PUT", created.body));
    expect(same.status).toBe(200);
    // Writing identical content does not bump the resourceVersion.
    expect(same.body.metadata.resourceVersion).toBe(rv1);
    const changed = structuredClone(created.body);
    changed.spec.ports[0].port = 81;
    const put = await call(api, `${base}/web`, json("PUT", changed));
    expect(Number(put.body.metadata.resourceVersion)).toBeGreaterThan(Number(rv1));
    expect(put.body.spec.clusterIP).toBe(created.body.spec.clusterIP);
    const stale = await call(api, `${base}/web`, json("PUT", changed));
    expect(stale.status).toBe(409);
    expect(stale.body.reason).toBe("Conflict");

    const merge = await call(api, `${base}/web`, json("PATCH", { metadata: { labels: { a: "1" } } }, "application/merge-patch+json"));
    expect(merge.body.metadata.labels).toEqual({ app: "web", a: "1" });
    const smp = await call(
      api,
      `${base}/web`,
      json("PATCH", { spec: { ports: [{ name: "https", port: 443 }, { $patch: "delete", port: 81 }] } }, "application/strategic-merge-patch+json"),
    );
    expect(smp.body.spec.ports.map((p: J) => p.port)).toEqual([443]);
    const jp = await call(api, `${base}/web`, json("PATCH", [{ op: "replace", path: "/spec/ports/0/port", value: 8443 }], "application/json-patch+json"));
    expect(jp.body.spec.ports[0].port).toBe(8443);
    const unsupported = await call(api, `${base}/web`, json("PATCH", {}, "text/plain"));
    expect(unsupported.status).toBe(415);

    // Main-resource writes cannot change status; the status subresource can.
    const st = await call(api, `${base}/web/status`, json("PATCH", { status: { loadBalancer: { ingress: [{ ip: "192.0.2.1" }] } } }, "application/merge-patch+json"));
    expect(st.body.status.loadBalancer.ingress[0].ip).toBe("192.0.2.1");
    const ignored = await call(api, `${base}/web`, json("PATCH", { status: { loadBalancer: {} } }, "application/merge-patch+json"));
    expect(ignored.body.status.loadBalancer.ingress).toHaveLength(1);

    const del = await call(api, `${base}/web`, { method: "DELETE" });
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ kind: "Status", status: "Success", details: { name: "web", kind: "services" } });
    expect((await call(api, `${base}/web`, { method: "DELETE" })).status).toBe(404);
    // Services have no deletecollection verb.
    expect((await call(api, base, { method: "DELETE" })).status).toBe(405);
  });

  test("strategic merge patch honours merge keys and $ directives", async () => {
    const api = await start();
    api.create("services", {
      metadata: { name: "m", namespace: "default", finalizers: ["a/x", "b/y"] },
      spec: { ports: [{ name: "a", port: 1 }, { name: "b", port: 2 }], selector: { app: "m", tier: "x" } },
    });
    const o = api.patch(
      "services",
      "default",
      "m",
      {
        metadata: { "$deleteFromPrimitiveList/finalizers": ["a/x"], finalizers: ["c/z"] },
        spec: {
          "$setElementOrder/ports": [{ port: 2 }, { port: 1 }, { port: 3 }],
          ports: [{ port: 3, name: "c" }, { port: 1, name: "a2" }],
          selector: { $patch: "replace", app: "n" },
        },
      },
      "strategic",
    );
    expect(o.metadata.finalizers).toEqual(["b/y", "c/z"]);
    expect(o.spec.ports.map((p: J) => `${p.name}:${p.port}`)).toEqual(["b:2", "a2:1", "c:3"]);
    expect(o.spec.selector).toEqual({ app: "n" });
  });

  test("finalizers keep a deleted object, marked, until they are removed", async () => {
    const api = await start();
    api.create("endpoints", { metadata: { name: "e", namespace: "default", finalizers: ["test/hold"] } });
    const del = await call(api, "/api/v1/namespaces/default/endpoints/e", { method: "DELETE" });
    expect(del.body.metadata.deletionTimestamp).toBeDefined();
    expect(api.get("endpoints", "default", "e")).toBeDefined();
    api.patch("endpoints", "default", "e", { metadata: { finalizers: null } });
    expect(api.get("endpoints", "default", "e")).toBeUndefined();
  });

  test("deletecollection honours selectors (where the kind allows it)", async () => {
    const api = await start();
    api.create("endpointslices", slice("a-1", "a", ["10.0.0.1"]));
    api.create("endpointslices", slice("a-2", "a", ["10.0.0.2"]));
    api.create("endpointslices", slice("b-1", "b", ["10.0.1.1"]));
    const r = await call(api, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Da", { method: "DELETE" });
    expect(r.body.kind).toBe("EndpointSliceList");
    expect(r.body.items.map((i: J) => i.metadata.name)).toEqual(["a-1", "a-2"]);
    expect(api.list("endpointslices").map((o) => o.metadata.name)).toEqual(["b-1"]);
  });

  test("namespaces are created on demand, or enforced with strictNamespaces", async () => {
    const lax = await start();
    lax.create("services", svc("a", "team-x"));
    expect(lax.get("namespaces", undefined, "team-x")?.status).toEqual({ phase: "Active" });
    const strict = await start({ strictNamespaces: true });
    const r = await call(strict, "/api/v1/namespaces/team-x/services", json("POST", svc("a", "team-x")));
    expect(r.status).toBe(404);
    expect(r.body.message).toBe('namespaces "team-x" not found');
    // Deleting a namespace takes its contents with it, as the namespace controller would.
    lax.delete("namespaces", undefined, "team-x");
    expect(lax.list("services")).toEqual([]);
  });

  test("custom resources (DestinationRule) are served only when asked, and refuse strategic merge patch", async () => {
    const api = await start({ serveDestinationRules: true });
    const base = "/apis/networking.istio.io/v1beta1/namespaces/default/destinationrules";
    const dr = { apiVersion: "networking.istio.io/v1beta1", kind: "DestinationRule", metadata: { name: "web" }, spec: { host: "web", trafficPolicy: { loadBalancer: { simple: "RANDOM" } } } };
    expect((await call(api, base, json("POST", dr))).status).toBe(201);
    const list = (await call(api, base)).body;
    // Unlike built-in lists, custom resource list items keep kind/apiVersion.
    expect(list.items[0]).toMatchObject({ kind: "DestinationRule", apiVersion: "networking.istio.io/v1beta1", metadata: { generation: 1 } });
    const smp = await call(api, `${base}/web`, json("PATCH", { spec: { host: "x" } }, "application/strategic-merge-patch+json"));
    expect(smp.status).toBe(415);
    const merge = await call(api, `${base}/web`, json("PATCH", { spec: { trafficPolicy: { loadBalancer: { simple: "ROUND_ROBIN" } } } }, "application/merge-patch+json"));
    expect(merge.body.spec.trafficPolicy.loadBalancer.simple).toBe("ROUND_ROBIN");
    expect(merge.body.metadata.generation).toBe(2);
  });

  test("the helper API throws Status errors", async () => {
    const api = await start();
    api.create("services", svc("a"));
    expect(() => api.create("services", svc("a"))).toThrow('services "a" already exists');
    expect(() => api.update("services", { ...svc("a"), metadata: { ...svc("a").metadata, resourceVersion: "1" } })).toThrow("the object has been modified");
    expect(api.delete("services", "default", "nope")).toBeUndefined();
  });
});

describe("auth, failures and outages", () => {
  test("a configured token is required; wrong or missing ones get 401", async () => {
    const api = await start({ token: "s3cret" });
    const none = await call(api, "/api/v1/services");
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
    expect((await call(api, "/api/v1/services", { headers: { authorization: "Bearer nope" } })).status).toBe(401);
    expect((await call(api, "/api/v1/services", { headers: { authorization: "Bearer s3cret", accept: "application/json" } })).status).toBe(200);
    const rec = api.requests.at(-1)!;
    expect(rec).toMatchObject({ method: "GET", path: "/api/v1/services", headers: { authorization: "Bearer s3cret", accept: "application/json" } });
  });

  test("forbid answers 403 with the apiserver's message", async () => {
    const api = await start();
    api.forbid("endpointslices", ["list", "watch"]);
    const r = await call(api, "/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices");
    expect(r.status).toBe(403);
    expect(r.body.message).toBe(
      'endpointslices.discovery.k8s.io is forbidden: User "system:anonymous" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "ns1"',
    );
    api.allow("endpointslices");
    expect((await call(api, "/apis/discovery.k8s.io/v1/endpointslices")).status).toBe(200);
  });

  test("failNext injects Status failures with Retry-After", async () => {
    const api = await start();
    api.failNext({ status: 429, count: 2, retryAfterSeconds: 1, match: (r) => r.path === "/api/v1/services" });
    const r = await call(api, "/api/v1/services");
    expect(r.status).toBe(429);
    expect(r.headers.get("retry-after")).toBe("1");
    expect(r.body.reason).toBe("TooManyRequests");
    expect((await call(api, "/api/v1/nodes")).status).toBe(200);
    expect((await call(api, "/api/v1/services")).status).toBe(429);
    expect((await call(api, "/api/v1/services")).status).toBe(200);
  });

  test("setDown refuses connections and comes back on the same port; 'unavailable' answers 503", async () => {
    const api = await start();
    const w = await WatchStream.open(api, "/api/v1/services?watch=1");
    await api.waitForWatches("services");
    const port = api.port;
    await api.setDown(true);
    await expect(w.line()).rejects.toThrow();
    await expect(fetch(`${api.url}/api/v1/services`, { signal: AbortSignal.timeout(3000) })).rejects.toThrow();
    await api.setDown(false);
    expect(api.port).toBe(port);
    expect((await call(api, "/api/v1/services")).status).toBe(200);
    await api.setDown(true, "unavailable");
    const r = await call(api, "/api/v1/services");
    expect(r.status).toBe(503);
    expect(r.body.reason).toBe("ServiceUnavailable");
    await api.setDown(false);
    expect((await call(api, "/api/v1/services")).status).toBe(200);
  });

  const openssl = Bun.which("openssl");
  test.skipIf(!openssl)("HTTPS with a client certificate requirement", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fake-apiserver-tls-"));
    try {
      const sh = (args: string[]) => {
        const p = Bun.spawnSync([openssl!, ...args], { cwd: dir, stderr: "pipe" });
        if (p.exitCode !== 0) throw new Error(p.stderr.toString());
      };
      const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
      sh(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=fake-ca"]);
      for (const [n, cn] of [["server", "127.0.0.1"], ["client", "edge-user"]] as const) {
        sh(["req", ...ec, "-keyout", `${n}.key`, "-out", `${n}.csr`, "-subj", `/CN=${cn}`]);
        writeFileSync(join(dir, `${n}.ext`), n === "server" ? "subjectAltName=IP:127.0.0.1\n" : "extendedKeyUsage=clientAuth\n");
        sh(["x509", "-req", "-in", `${n}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${n}.crt`, "-days", "1", "-extfile", `${n}.ext`]);
      }
      const read = (f: string) => Bun.file(join(dir, f)).text();
      const [ca, cert, key, ccert, ckey] = await Promise.all(["ca.crt", "server.crt", "server.key", "client.crt", "client.key"].map(read));
      const api = await start({ tls: { cert: cert!, key: key!, ca: ca!, requireClientCert: true }, token: "t" });
      expect(api.url).toStartWith("https://127.0.0.1:");
      const ok = await fetch(`${api.url}/api/v1/services`, { headers: { authorization: "Bearer t" }, tls: { ca: ca!, cert: ccert!, key: ckey! } });
      expect(ok.status).toBe(200);
      await expect(fetch(`${api.url}/api/v1/services`, { tls: { ca: ca! } })).rejects.toThrow();

      if (findKubectl()) {
        const r = await kubectl(api, ["get", "svc", "-A"], {
          auth: ["--token", "t", "--certificate-authority", join(dir, "ca.crt"), "--client-certificate", join(dir, "client.crt"), "--client-key", join(dir, "client.key")],
        });
        expect(r.code).toBe(0);
        expect(r.stderr).toContain("No resources found");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const kubectlBin = findKubectl();
if (!kubectlBin) console.warn("fake-apiserver.test: kubectl not installed (Debian package kubernetes-client); skipping kubectl fidelity tests");

describe.skipIf(!kubectlBin)("kubectl against the fake", () => {
  const manifest = (port: number) => `apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: edge
  labels: {app: api}
spec:
  selector: {app: api}
  ports:
  - name: http
    port: ${port}
    targetPort: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-1
  namespace: edge
  labels:
    kubernetes.io/service-name: api
addressType: IPv4
ports:
- name: http
  port: 80
  protocol: TCP
endpoints:
- addresses: ["10.1.0.1"]
  conditions: {ready: true}
  nodeName: edge-1
`;

  test("get, apply (create, unchanged, configured), get endpointslices, delete", async () => {
    const api = await start();
    api.create("services", svc("web", "default"));
    api.create("nodes", {
      metadata: { name: "edge-1", labels: { "node-role.kubernetes.io/edge": "" } },
      status: { conditions: [{ type: "Ready", status: "True" }], nodeInfo: { kubeletVersion: "v1.29.5" } },
    });
    const ok = async (args: string[], stdin?: string) => {
      const r = await kubectl(api, args, stdin !== undefined ? { stdin } : {});
      if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
      return r.stdout;
    };
    const rows = (out: string) => out.trim().split("\n").map((l) => l.trim().split(/\s+/));

    const svcs = rows(await ok(["get", "svc", "-A"]));
    expect(svcs[0]).toEqual(["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    expect(svcs[1]!.slice(0, 6)).toEqual(["default", "web", "ClusterIP", api.get("services", "default", "web")!.spec.clusterIP, "<none>", "80/TCP"]);
    expect(rows(await ok(["get", "nodes"]))[1]!.slice(0, 3)).toEqual(["edge-1", "Ready", "edge"]);

    expect(await ok(["apply", "-f", "-"], manifest(8080))).toBe("service/api created\nendpointslice.discovery.k8s.io/api-1 created\n");
    expect(await ok(["apply", "-f", "-"], manifest(8080))).toBe("service/api unchanged\nendpointslice.discovery.k8s.io/api-1 unchanged\n");
    const before = api.get("services", "edge", "api")!;
    expect(await ok(["apply", "-f", "-"], manifest(9090))).toBe("service/api configured\nendpointslice.discovery.k8s.io/api-1 unchanged\n");
    const after = api.get("services", "edge", "api")!;
    // kubectl's strategic merge patch replaced the port (merge key "port") and kept allocated fields.
    expect(after.spec.ports).toEqual([{ name: "http", port: 9090, targetPort: 80, protocol: "TCP" }]);
    expect(after.spec.clusterIP).toBe(before.spec.clusterIP);
    expect(after.metadata.annotations?.["kubectl.kubernetes.io/last-applied-configuration"]).toContain("9090");

    const slices = rows(await ok(["get", "endpointslices", "-A"]));
    expect(slices[0]).toEqual(["NAMESPACE", "NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    expect(slices[1]!.slice(0, 5)).toEqual(["edge", "api-1", "IPv4", "80", "10.1.0.1"]);
    const yaml = await ok(["get", "endpointslice", "api-1", "-n", "edge", "-o", "jsonpath={.endpoints[0].nodeName}"]);
    expect(yaml).toBe("edge-1");

    expect(await ok(["delete", "svc", "api", "-n", "edge"])).toBe('service "api" deleted\n');
    expect(api.get("services", "edge", "api")).toBeUndefined();
    const gone = await kubectl(api, ["get", "svc", "api", "-n", "edge"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('services "api" not found');
    expect(rows(await ok(["get", "svc", "-A"]))).toHaveLength(2);
  });

  test("kubectl apply --server-side creates and updates", async () => {
    const api = await start();
    for (const port of [8080, 9090]) {
      const r = await kubectl(api, ["apply", "--server-side", "-f", "-"], { stdin: manifest(port) });
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("service/api serverside-applied\nendpointslice.discovery.k8s.io/api-1 serverside-applied\n");
      expect(api.get("services", "edge", "api")!.spec.ports).toEqual([{ name: "http", port, targetPort: 80, protocol: "TCP" }]);
    }
  });

  test("kubectl reports a missing EndpointSlice API as an unknown resource type", async () => {
    const api = await start({ serveEndpointSlices: false });
    const r = await kubectl(api, ["get", "endpointslices", "-A"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the server doesn\'t have a resource type "endpointslices"');
  });

  test("kubectl get -w prints rows as watch events arrive", async () => {
    const api = await start();
    api.create("services", svc("a"));
    const run = kubectl(api, ["get", "svc", "-w", "--request-timeout", "3s"]);
    await api.waitForWatches("services", 1, 10000);
    api.create("services", svc("b"));
    const out = (await run).stdout;
    expect(out).toMatch(/^NAME\s+TYPE/);
    expect(out).toMatch(/\nb\s+ClusterIP/);
  });
});
