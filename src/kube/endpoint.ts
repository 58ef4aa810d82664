// Where and how to reach the Kubernetes API: KubeEdge's MetaServer (plain
// HTTP, no auth), a kubeconfig, or in-cluster service-account credentials.
import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";

export interface TlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
  insecure?: boolean;
}

export interface KubeEndpoint {
  server: string;
  /** bearer token, read per request so a rotated token is picked up */
  token?: () => string | undefined;
  tls?: TlsOptions;
  /** where the settings came from, for logs and /status */
  source: string;
}

export class KubeConfigError extends Error {}

/** re-reads a token file when its mtime changes (service-account tokens rotate) */
export function fileToken(path: string): () => string | undefined {
  let mtime = -1;
  let value: string | undefined;
  return () => {
    try {
      const m = statSync(path).mtimeMs;
      if (m !== mtime) {
        value = readFileSync(path, "utf8").trim();
        mtime = m;
      }
    } catch {
      // keep the last token we had; the apiserver will say 401 if it is stale
    }
    return value;
  };
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new KubeConfigError(`${what}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const b64 = (s: string) => Buffer.from(s, "base64").toString("utf8");

interface Named<T> {
  name: string;
  [k: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

/** reads a kubeconfig: current-context's cluster and user */
export function fromKubeconfig(path: string): KubeEndpoint {
  const text = readText(path, "kubeconfig");
  let doc: any;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new KubeConfigError(`kubeconfig ${path}: invalid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  const base = dirname(resolve(path));
  const rel = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const current = doc?.["current-context"];
  if (!current) throw new KubeConfigError(`kubeconfig ${path}: no current-context`);
  const ctx = (doc.contexts as Named<any>[] | undefined)?.find((c) => c.name === current)?.context;
  if (!ctx) throw new KubeConfigError(`kubeconfig ${path}: context "${current}" not found`);
  const cluster = (doc.clusters as Named<any>[] | undefined)?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster?.server) throw new KubeConfigError(`kubeconfig ${path}: cluster "${ctx.cluster}" not found or has no server`);
  const user = (doc.users as Named<any>[] | undefined)?.find((u) => u.name === ctx.user)?.user ?? {};
  const tls: TlsOptions = {};
  if (cluster["certificate-authority-data"]) tls.ca = b64(cluster["certificate-authority-data"]);
  else if (cluster["certificate-authority"]) tls.ca = readText(rel(cluster["certificate-authority"]), "kubeconfig certificate-authority");
  if (cluster["insecure-skip-tls-verify"] === true) tls.insecure = true;
  if (user["client-certificate-data"]) tls.cert = b64(user["client-certificate-data"]);
  else if (user["client-certificate"]) tls.cert = readText(rel(user["client-certificate"]), "kubeconfig client-certificate");
  if (user["client-key-data"]) tls.key = b64(user["client-key-data"]);
  else if (user["client-key"]) tls.key = readText(rel(user["client-key"]), "kubeconfig client-key");
  let token: (() => string | undefined) | undefined;
  if (typeof user.token === "string") {
    const t = user.token;
    token = () => t;
  } else if (typeof user.tokenFile === "string") token = fileToken(rel(user.tokenFile));
  if (user.exec || user["auth-provider"]) {
    throw new KubeConfigError(`kubeconfig ${path}: user "${ctx.user}" uses exec/auth-provider plugins, which edgemesh does not run; use a token or client certificate`);
  }
  const server = String(cluster.server).replace(/\/$/, "");
  if (token && !tokenTravelsSafely(server)) {
    throw new KubeConfigError(
      `kubeconfig ${path}: refusing to send user "${ctx.user}"'s bearer token over plain http to ${server}: anyone on the path could read it; use an https:// server (or a loopback address)`,
    );
  }
  return { server, token, tls, source: `kubeconfig ${path} (context ${current})` };
}

/** https, or http to this host's own loopback (KubeEdge's MetaServer): where a bearer token may go */
export function tokenTravelsSafely(server: string): boolean {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    return false;
  }
  if (url.protocol === "https:") return true;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export function inCluster(env: Record<string, string | undefined> = process.env, dir = SERVICE_ACCOUNT_DIR): KubeEndpoint {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new KubeConfigError("inCluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod?)");
  const h = host.includes(":") ? `[${host}]` : host;
  return {
    server: `https://${h}:${port}`,
    token: fileToken(`${dir}/token`),
    tls: { ca: readText(`${dir}/ca.crt`, "inCluster CA") },
    source: "in-cluster service account",
  };
}

export function plain(server: string): KubeEndpoint {
  return { server: server.replace(/\/$/, ""), source: server };
}
