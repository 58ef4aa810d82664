// Bun emits 'error' on a TCP socket whose dial was aborted (dial timeout,
// DCUtR, dial queue) after @libp2p/tcp stopped listening to it; unhandled,
// that kills the process (DESIGN §7). Socket errors of that kind are
// network weather, not bugs: log them and keep serving. Anything else still
// ends the process on an uncaught exception (systemd restarts it); an
// unhandled rejection is logged, since libp2p leaves some behind harmlessly.
import type { Logger } from "../log.ts";

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ECONNABORTED",
  "EADDRNOTAVAIL",
  "ENOTCONN",
  "ERR_SOCKET_CLOSED",
  "ERR_STREAM_DESTROYED",
  "ABORT_ERR",
]);

export function isNetworkWeather(err: unknown): boolean {
  if (!err || typeof err !== "object") return false;
  const e = err as { code?: string; name?: string; syscall?: string };
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  return e.name === "AbortError" || e.name === "TimeoutError";
}

let installed = false;
let counter = 0;

export function installCrashGuard(log: Logger, onFatal: (err: unknown) => void = () => process.exit(1)): { contained(): number } {
  if (!installed) {
    installed = true;
    const handle = (err: unknown, kind: string) => {
      if (isNetworkWeather(err)) {
        counter++;
        log.debug("contained a stray socket error", { kind, code: (err as { code?: string }).code ?? (err as Error).name });
        return;
      }
      log.error(`fatal ${kind}`, { error: err instanceof Error ? `${err.name}: ${err.message}` : String(err), stack: err instanceof Error ? err.stack?.split("\n").slice(1, 4).join(" | ") : "" });
      if (kind === "uncaught exception") onFatal(err);
    };
    process.on("uncaughtException", (err) => handle(err, "uncaught exception"));
    process.on("unhandledRejection", (err) => handle(err, "unhandled rejection"));
  }
  return { contained: () => counter };
}
