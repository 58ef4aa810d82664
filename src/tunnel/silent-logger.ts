// libp2p builds a debug logger for every connection and every stream, and
// scopes below them (multistream-select, privnet ...): about 1.5 KiB of heap
// and 3.8 KiB of RSS each, measured, several per proxied connection, plus the
// CPU to build their names. Their output only shows with DEBUG set. Without
// DEBUG, every component and scope shares one logger that does nothing; with
// it, libp2p's own logger is used, as before.
import type { ComponentLogger, Logger } from "@libp2p/interface";

export function silentLogger(): ComponentLogger {
  const nothing = () => {};
  const silent: Logger = Object.assign(nothing.bind(null), {
    enabled: false,
    error: Object.assign(nothing.bind(null), { enabled: false }),
    trace: Object.assign(nothing.bind(null), { enabled: false }),
    newScope: () => silent,
  });
  return { forComponent: () => silent };
}

/** libp2p's `logger` option: ours unless DEBUG asks for libp2p's */
export function libp2pLoggerOption(env: Record<string, string | undefined> = process.env): { logger?: ComponentLogger } {
  return env.DEBUG ? {} : { logger: silentLogger() };
}
