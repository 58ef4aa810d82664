// Address parsing shared by the config schema and the modules that listen.
import { isIP } from "node:net";

export { isIP };

export interface HostPort {
  host: string;
  port: number;
}

const HOSTNAME = /^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$/;

/** Parses "host:port" or "[v6]:port"; undefined when it is neither. */
export function parseHostPort(s: string): HostPort | undefined {
  let host: string;
  let portText: string;
  if (s.startsWith("[")) {
    const end = s.indexOf("]:");
    if (end < 0) return undefined;
    host = s.slice(1, end);
    portText = s.slice(end + 2);
    if (isIP(host) !== 6) return undefined;
  } else {
    const i = s.lastIndexOf(":");
    if (i <= 0 || s.indexOf(":") !== i) return undefined;
    host = s.slice(0, i);
    portText = s.slice(i + 1);
    if (isIP(host) === 0 && !HOSTNAME.test(host)) return undefined;
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}

export function isHostPort(s: string): boolean {
  return parseHostPort(s) !== undefined;
}

/** Formats for URLs and listen calls: v6 hosts get brackets. */
export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
