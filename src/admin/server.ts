// The admin HTTP endpoint: health, readiness, status and metrics. It binds
// to loopback by default; it exposes topology, never secrets.
import type { Logger } from "../log.ts";
import type { Metrics } from "./metrics.ts";
import type { StatusDoc } from "./status.ts";
import { parseHostPort } from "../config/net.ts";

export interface AdminSources {
  ready(): boolean;
  /** names of what is not ready yet, shown by /readyz */
  notReady(): string[];
  status(): StatusDoc;
  metrics: Metrics;
}

export interface AdminServer {
  address: string;
  stop(): Promise<void>;
}

export function startAdmin(listen: string, src: AdminSources, log: Logger): AdminServer {
  const hp = parseHostPort(listen);
  if (!hp) throw new Error(`adminListen: expected host:port, got ${JSON.stringify(listen)}`);
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: hp.host,
      port: hp.port,
      fetch(req) {
        const path = new URL(req.url).pathname;
        if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405 });
        switch (path) {
          case "/healthz":
            return new Response("ok\n");
          case "/readyz": {
            if (src.ready()) return new Response("ready\n");
            return new Response(`not ready: ${src.notReady().join(", ")}\n`, { status: 503 });
          }
          case "/status":
            return Response.json(src.status());
          case "/metrics":
            return new Response(src.metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } });
          default:
            return new Response("not found: try /healthz /readyz /status /metrics\n", { status: 404 });
        }
      },
      error(err) {
        log.error("admin request failed", { error: err });
        return new Response("internal error\n", { status: 500 });
      },
    });
  } catch (e) {
    throw new Error(`adminListen: cannot listen on ${listen}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  log.info("admin endpoint listening", { address: listen });
  return {
    address: listen,
    stop: async () => {
      await server.stop(true);
    },
  };
}
