// Reaching a backend for one client connection: pick with the service's
// policy, dial (directly when the endpoint is on this node or has no node,
// else through the tunnel to its node), and on failure try the next one: at
// most 3 tries within a bounded time.
import type { Endpoint, Service, ServicePort } from "../../model/index.ts";
import { targetPortFor } from "../../model/index.ts";
import type { EarlyBytes, TunnelAccess } from "../../model/tunnel.ts";
import type { Upstream } from "../../model/connector.ts";
import { dialTcp } from "../../tunnel/proxy/dial.ts";
import type { Policy } from "./policy.ts";

export const MAX_TRIES = 3;
export const CONNECT_BUDGET_MS = 10_000;

export type { Upstream };

export interface ConnectDeps {
  nodeName: string;
  tunnel?: TunnelAccess;
  onFailure?: (endpoint: Endpoint, error: string) => void;
  /** endpoints that failed recently, tried only when nothing else is left */
  coolingDown?: ReadonlySet<string>;
  /**
   * The client's bytes while backends are asked (the same bytes for every
   * try). They go with the tunnel request and behind it, saving the round
   * trip that waiting for its reply would cost, or are written to a local
   * backend as soon as it is connected (and later ones as they come, until
   * the caller takes the client over).
   */
  early?: EarlyBytes;
  /** how long one tunnel open may take (default TUNNEL_OPEN_TIMEOUT_MS) */
  tunnelOpenTimeoutMs?: number;
}

export const TUNNEL_OPEN_TIMEOUT_MS = 8000;

/** how long an endpoint whose dial failed is passed over */
export const COOLDOWN_MS = 10_000;

/** remembers endpoints whose dial failed, so the next clients skip them for a while */
export class Cooldown {
  private readonly until = new Map<string, number>();
  add(ip: string, now = Date.now()): void {
    this.until.set(ip, now + COOLDOWN_MS);
  }
  active(now = Date.now()): Set<string> {
    const out = new Set<string>();
    for (const [ip, t] of this.until) {
      if (t > now) out.add(ip);
      else this.until.delete(ip);
    }
    return out;
  }
}

export class NoBackendError extends Error {}

export function isLocal(ep: Endpoint, nodeName: string): boolean {
  return !ep.nodeName || ep.nodeName === nodeName;
}

export async function connectBackend(service: Service, port: ServicePort, policy: Policy, clientIp: string, deps: ConnectDeps): Promise<Upstream> {
  const tried = new Set<string>();
  const deadline = Date.now() + CONNECT_BUDGET_MS;
  const errors: string[] = [];
  for (let i = 0; i < MAX_TRIES; i++) {
    // prefer endpoints that have not failed lately; fall back to them when nothing else is left
    const avoid = deps.coolingDown?.size ? new Set([...tried, ...deps.coolingDown]) : tried;
    const ep = policy.pick(service, { clientIp, exclude: avoid }) ?? policy.pick(service, { clientIp, exclude: tried });
    if (!ep) break;
    tried.add(ep.ip);
    const target = targetPortFor(port, ep);
    if (target === undefined) {
      errors.push(`${ep.ip}: no port named ${String(port.targetPort)}`);
      continue;
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      if (isLocal(ep, deps.nodeName)) {
        const socket = await dialTcp({ host: ep.ip, port: target }, Math.min(left, 5000));
        const early = deps.early?.read();
        if (early?.byteLength) socket.write(early);
        deps.early?.follow((chunk) => socket.write(chunk));
        return { kind: "socket", socket, endpoint: ep };
      }
      if (!deps.tunnel) throw new Error("tunnel not up");
      const opening = deps.tunnel.open(ep.nodeName, { protocol: "tcp", host: ep.ip, port: target }, deps.early);
      // an open that answers after we gave up on it must not leave its stream (and the far agent's backend connection) open
      const channel = await withTimeout(opening, Math.min(left, deps.tunnelOpenTimeoutMs ?? TUNNEL_OPEN_TIMEOUT_MS), (late) => late.stream.abort(new Error("tunnel open answered after its timeout")));
      return { kind: "tunnel", channel, endpoint: ep };
    } catch (e) {
      const why = (e as Error).message;
      errors.push(`${ep.ip}${ep.nodeName ? `@${ep.nodeName}` : ""}: ${why}`);
      deps.onFailure?.(ep, why);
    }
  }
  throw new NoBackendError(errors.length ? errors.join("; ") : "no ready endpoints");
}

function withTimeout<T>(p: Promise<T>, ms: number, onLate: (value: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      reject(new Error(`no answer in ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(t);
        if (timedOut) onLate(v);
        else resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
