// Auth variants against the fake apiserver: bearer token from a kubeconfig,
// client certificates over TLS with inline kubeconfig data, in-cluster
// credentials with a rotating token.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { FakeApiServer } from "./fake-apiserver/index.ts";
import { Reflector } from "../../src/kube/reflector.ts";
import { fromKubeconfig, inCluster, KubeConfigError, type KubeEndpoint } from "../../src/kube/endpoint.ts";
import { createLogger } from "../../src/log.ts";
import { kubeFetch, KubeHttpError } from "../../src/kube/http.ts";
import { waitFor } from "../lab/wait.ts";
import { tempDir } from "../util/temp.ts";

const dir = tempDir("edgemesh-kube-auth");
const f = (n: string) => join(dir, n);
const b64 = (p: string) => Buffer.from(readFileSync(p)).toString("base64");

function sh(cmd: string): void {
  const r = Bun.spawnSync(["bash", "-c", cmd], { cwd: dir });
  if (r.exitCode !== 0) throw new Error(`${cmd}: ${r.stderr.toString()}`);
}

beforeAll(() => {
  // a CA, a server certificate for 127.0.0.1, a client certificate
  sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca 2>/dev/null");
  sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null");
  writeFileSync(f("san.ext"), "subjectAltName=IP:127.0.0.1\n");
  sh("openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null");
  sh("openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=edgemesh/O=system:nodes 2>/dev/null");
  sh("openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 2>/dev/null");
});

const servers: FakeApiServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

async function listsServices(ep: KubeEndpoint, waitMs = 5000): Promise<number> {
  const r = new Reflector({ endpoint: ep, path: "/api/v1/services", resource: "services", log: createLogger("t", "error"), onChange: () => {} });
  r.start();
  try {
    await Promise.race([r.synced, Bun.sleep(waitMs).then(() => Promise.reject(new Error(`no sync: ${r.status().lastError}`)))]);
    return r.cache.size;
  } finally {
    await r.stop();
  }
}

function kubeconfig(name: string, cluster: Record<string, unknown>, user: Record<string, unknown>): string {
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    "current-context": "ctx",
    contexts: [{ name: "ctx", context: { cluster: "c", user: "u" } }, { name: "other", context: { cluster: "nope", user: "nope" } }],
    clusters: [{ name: "c", cluster }],
    users: [{ name: "u", user }],
  };
  writeFileSync(f(name), JSON.stringify(doc)); // JSON is YAML
  return f(name);
}

describe("kube auth", () => {
  test("bearer token from a kubeconfig; a wrong token gets 401 and is reported", async () => {
    const api = await FakeApiServer.start({ token: "s3cret" });
    servers.push(api);
    api.create("services", { metadata: { name: "a", namespace: "demo" }, spec: { ports: [{ port: 80 }] } });
    expect(await listsServices(fromKubeconfig(kubeconfig("tok.yaml", { server: api.url }, { token: "s3cret" })))).toBe(1);
    expect(api.requests.some((r) => r.headers.authorization === "Bearer s3cret")).toBe(true);
    await expect(listsServices(fromKubeconfig(kubeconfig("bad.yaml", { server: api.url }, { token: "wrong" })), 2000)).rejects.toThrow(/401/);
  }, 20_000);

  test("client certificate over TLS, from inline kubeconfig data", async () => {
    const api = await FakeApiServer.start({
      tls: { cert: readFileSync(f("server.crt"), "utf8"), key: readFileSync(f("server.key"), "utf8"), ca: readFileSync(f("ca.crt"), "utf8"), requireClientCert: true },
    });
    servers.push(api);
    api.create("services", { metadata: { name: "a", namespace: "demo" }, spec: { ports: [{ port: 80 }] } });
    expect(api.url).toStartWith("https://");
    const inline = kubeconfig(
      "cert.yaml",
      { server: api.url, "certificate-authority-data": b64(f("ca.crt")) },
      { "client-certificate-data": b64(f("client.crt")), "client-key-data": b64(f("client.key")) },
    );
    expect(await listsServices(fromKubeconfig(inline))).toBe(1);
    // the same with file paths, relative to the kubeconfig
    const files = kubeconfig("cert-files.yaml", { server: api.url, "certificate-authority": "ca.crt" }, { "client-certificate": "client.crt", "client-key": "client.key" });
    expect(await listsServices(fromKubeconfig(files))).toBe(1);
    // no client certificate: refused
    await expect(listsServices(fromKubeconfig(kubeconfig("nocert.yaml", { server: api.url, "certificate-authority-data": b64(f("ca.crt")) }, {})))).rejects.toThrow();
  }, 20_000);

  test("in-cluster: service-account token and CA, token re-read when it rotates", async () => {
    const api = await FakeApiServer.start({
      token: "token-1",
      tls: { cert: readFileSync(f("server.crt"), "utf8"), key: readFileSync(f("server.key"), "utf8") },
    });
    servers.push(api);
    const sa = join(dir, "sa");
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, "token"), "token-1\n");
    writeFileSync(join(sa, "ca.crt"), readFileSync(f("ca.crt")));
    const ep = inCluster({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(api.port) }, sa);
    expect(await listsServices(ep)).toBe(0);
    await Bun.sleep(20); // a new mtime
    writeFileSync(join(sa, "token"), "token-2\n");
    expect(ep.token?.()).toBe("token-2");
    expect(() => inCluster({}, sa)).toThrow(KubeConfigError);
  }, 20_000);

  test("kubeconfig problems are clear errors", () => {
    writeFileSync(f("noctx.yaml"), "apiVersion: v1\nkind: Config\n");
    expect(() => fromKubeconfig(f("noctx.yaml"))).toThrow("no current-context");
    expect(() => fromKubeconfig(f("missing.yaml"))).toThrow("cannot read");
    const exec = kubeconfig("exec.yaml", { server: "https://x" }, { exec: { command: "aws" } });
    expect(() => fromKubeconfig(exec)).toThrow(/exec\/auth-provider plugins/);
  }, 20_000);
});

describe("a bearer token goes only where it is safe, and never follows a redirect", () => {
  const kubeconfig = (server: string) => {
    const p = f(`kc-${Bun.hash(server)}.yaml`);
    writeFileSync(
      p,
      `apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: "${server}"}}]\nusers: [{name: u, user: {token: secret-token}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n`,
    );
    return p;
  };

  test("plain http to another host with a token is refused, naming the fix; https and loopback are fine", () => {
    expect(() => fromKubeconfig(kubeconfig("http://10.20.30.40:8080"))).toThrow(/refusing to send user "u"'s bearer token over plain http to http:\/\/10\.20\.30\.40:8080.*https/);
    expect(() => fromKubeconfig(kubeconfig("http://apiserver.example:80"))).toThrow(KubeConfigError);
    for (const ok of ["https://10.20.30.40:6443", "http://127.0.0.1:10550", "http://localhost:10550", "http://[::1]:10550"]) {
      expect(fromKubeconfig(kubeconfig(ok)).server).toBe(ok);
    }
  });

  test("a redirect is an error and the token never reaches where it points", async () => {
    let followedWith: string | null | undefined;
    const target = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => ((followedWith = req.headers.get("authorization")), new Response("{}")) });
    const redirector = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.redirect(`http://127.0.0.1:${target.port}/api/v1/services`, 302) });
    try {
      const ep: KubeEndpoint = { server: `http://127.0.0.1:${redirector.port}`, token: () => "secret-token", tls: {}, source: "test" };
      const err = await kubeFetch(ep, "/api/v1/services").then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(KubeHttpError);
      expect((err as Error).message).toContain("redirect");
      expect(followedWith).toBeUndefined();
    } finally {
      redirector.stop(true);
      target.stop(true);
    }
  });
});
