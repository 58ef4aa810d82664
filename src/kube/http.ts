// fetch against the Kubernetes API: JSON only, bearer token, TLS options.
import type { KubeEndpoint } from "./endpoint.ts";

export class KubeHttpError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }

  static async from(res: Response, what: string): Promise<KubeHttpError> {
    let detail = "";
    try {
      const body = (await res.json()) as { message?: string; reason?: string };
      detail = body.message ?? body.reason ?? "";
    } catch {
      // not a Status object
    }
    return new KubeHttpError(`${what}: HTTP ${res.status}${detail ? `: ${detail}` : ""}`, res.status);
  }
}

export interface FetchOptions {
  signal?: AbortSignal;
  /** whole-request timeout; watches pass none and rely on timeoutSeconds */
  timeoutMs?: number;
  stream?: boolean;
  method?: string;
}

export async function kubeFetch(ep: KubeEndpoint, path: string, o: FetchOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json", "User-Agent": "edgemesh" };
  const token = ep.token?.();
  if (token) headers.Authorization = `Bearer ${token}`;
  const signals = [o.signal, o.timeoutMs ? AbortSignal.timeout(o.timeoutMs) : undefined].filter((s): s is AbortSignal => !!s);
  const init: RequestInit & { tls?: Record<string, unknown> } = {
    method: o.method ?? "GET",
    headers,
    // a redirect would carry the request (and its token) elsewhere: the
    // apiserver never sends one, so it is answered as the error it is
    redirect: "manual",
    signal: signals.length ? AbortSignal.any(signals) : undefined,
  };
  if (ep.server.startsWith("https:") && ep.tls) {
    init.tls = {
      ...(ep.tls.ca ? { ca: ep.tls.ca } : {}),
      ...(ep.tls.cert ? { cert: ep.tls.cert } : {}),
      ...(ep.tls.key ? { key: ep.tls.key } : {}),
      rejectUnauthorized: !ep.tls.insecure,
    };
  }
  let res: Response;
  try {
    res = await fetch(`${ep.server}${path}`, init);
  } catch (e) {
    const err = e as { code?: string; message?: string; name?: string };
    if (err.name === "AbortError" && o.signal?.aborted) throw e;
    throw new Error(`${ep.server}: ${err.code ?? err.name ?? "error"}${err.message ? ` (${err.message})` : ""}`);
  }
  if (res.status >= 300 && res.status < 400) {
    void res.body?.cancel();
    throw new KubeHttpError(`${ep.server}${path}: HTTP ${res.status} redirect to ${res.headers.get("location") ?? "?"} not followed`, res.status);
  }
  return res;
}

/** a response body past the size we read: the caller asks for less (a smaller page) or reports it */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`response body larger than ${limit} bytes`);
  }
}

/** reads a JSON body of at most `limit` bytes; past it the body is cancelled, never buffered whole */
export async function readJsonLimited(res: Response, limit: number): Promise<unknown> {
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > limit) {
    await res.body?.cancel();
    throw new BodyTooLargeError(limit);
  }
  if (!res.body) return JSON.parse("");
  const parts: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      throw new BodyTooLargeError(limit);
    }
    parts.push(value);
  }
  return JSON.parse(Buffer.concat(parts, total).toString("utf8"));
}
