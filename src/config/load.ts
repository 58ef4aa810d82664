// Reads, validates and resolves the config file. Every failure becomes a
// ConfigError whose lines name the field path and what was expected, so an
// operator can fix the file without reading our source.
import { readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { resolve, dirname, isAbsolute } from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import type { z } from "zod";
import { configSchema, type ConfigFile } from "./schema.ts";
import { parseHostPort } from "./net.ts";
import { loadIdentity, type NodeIdentity, type TrustPaths } from "../trust/load.ts";

export type Role = "agent" | "server";

export const DEFAULT_ADMIN: Record<Role, string> = {
  agent: "127.0.0.1:10556",
  server: "127.0.0.1:10557",
};

export const MIN_PSK_BYTES = 16;

export interface Config extends Omit<ConfigFile, "nodeName" | "adminListen"> {
  nodeName: string;
  adminListen: string;
  /** the mesh secret read from the psk file (trimmed) */
  pskSecret: Uint8Array;
  /** SOCKS5 credentials when agent.socks5.username is set (password read from its file, trimmed) */
  socks5Credentials?: { username: Uint8Array; password: Uint8Array };
  /** absolute path of the file this came from, "" when built in code */
  configPath: string;
  role: Role;
  /** not errors, but an operator should hear of them at start (the daemon logs each) */
  warnings: string[];
  /** where nodeName came from; a certificate's name replaces one that was only a default */
  nodeNameFrom: "file" | "env" | "hostname";
  /** `trust` with its paths resolved against the config file's directory */
  trustPaths?: TrustPaths;
  /** server.revocations, resolved */
  revocationsPath?: string;
  /** this node's identity v2, once loadIdentityInto has checked it */
  identity?: NodeIdentity;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || "(top level)";
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function closest(word: string, options: string[]): string | undefined {
  // Levenshtein distance ≤ 2 is a typo worth suggesting.
  let best: string | undefined;
  let bestD = 3;
  for (const o of options) {
    const d = editDistance(word.toLowerCase(), o.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = o;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function knownKeys(path: readonly PropertyKey[]): string[] {
  // Walk the schema along the path to list the fields allowed there.
  let s: any = configSchema;
  for (const p of path) {
    while (s?._zod?.def?.innerType) s = s._zod.def.innerType;
    if (s?._zod?.def?.type === "array") s = s._zod.def.element;
    else if (typeof p === "string") s = s?._zod?.def?.shape?.[p];
  }
  while (s?._zod?.def?.innerType) s = s._zod.def.innerType;
  return Object.keys(s?._zod?.def?.shape ?? {});
}

export function formatIssue(issue: z.core.$ZodIssue): string[] {
  const at = formatPath(issue.path);
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case "unrecognized_keys": {
      const allowed = knownKeys(issue.path);
      return issue.keys.map((k) => {
        const hint = closest(k, allowed);
        const where = formatPath([...issue.path, k]);
        return `${where}: unknown field${hint ? ` (did you mean "${hint}"?)` : ""}`;
      });
    }
    case "invalid_type":
      if (input === undefined) return [`${at}: required${issue.message.startsWith("required") ? issue.message.slice(8) : `, expected ${issue.expected}`}`];
      return [`${at}: expected ${issue.expected}, got ${describe(input)}`];
    case "too_small":
      if (issue.origin === "string" && Number(issue.minimum) === 1) return [`${at}: must not be empty`];
      if (issue.origin === "array") return [`${at}: expected at least ${issue.minimum} entries`];
      if (issue.origin === "string") return [`${at}: expected at least ${issue.minimum} characters, got ${describe(input)}`];
      return [`${at}: expected ${issue.inclusive ? ">=" : ">"} ${issue.minimum}, got ${describe(input)}`];
    case "too_big":
      if (issue.origin === "array") return [`${at}: expected at most ${issue.maximum} entries`];
      if (issue.origin === "string") return [`${at}: expected at most ${issue.maximum} characters`];
      return [`${at}: expected ${issue.inclusive ? "<=" : "<"} ${issue.maximum}, got ${describe(input)}`];
    case "invalid_value":
      return [`${at}: expected one of ${issue.values.map((v) => String(v)).join(" | ")}, got ${describe(input)}`];
    case "invalid_union": {
      // Report the most specific branch failure rather than "invalid input".
      const branch = issue.errors.flat().find((e) => e.code !== "invalid_type") ?? issue.errors.flat()[0];
      if (branch) return formatIssue({ ...branch, path: [...issue.path, ...branch.path], input } as z.core.$ZodIssue);
      return [`${at}: invalid value ${describe(input)}`];
    }
    default: {
      const msg = issue.message.replace(/^Invalid input: /, "");
      return [`${at}: ${msg}${input !== undefined ? `, got ${describe(input)}` : ""}`];
    }
  }
}

export interface LoadOptions {
  role: Role;
  env?: Record<string, string | undefined>;
  hostname?: () => string;
}

/** Validates an already-parsed document; `baseDir` resolves a relative psk path. */
export function buildConfig(doc: unknown, baseDir: string, configPath: string, opts: LoadOptions): Config {
  if (doc === null || doc === undefined) doc = {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError([`(top level): expected a mapping of fields, got ${describe(doc)}`]);
  }
  const parsed = configSchema.safeParse(doc, { reportInput: true });
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.flatMap(formatIssue));
  }
  const file = parsed.data;
  const env = opts.env ?? process.env;
  let nodeName = file.nodeName ?? env.NODE_NAME ?? (opts.hostname ?? hostname)();
  nodeName = nodeName.trim().toLowerCase();
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName)) {
    throw new ConfigError([`nodeName: expected a lowercase DNS name, got ${describe(nodeName)} (from ${file.nodeName ? "the file" : env.NODE_NAME ? "$NODE_NAME" : "the hostname"})`]);
  }
  const pskPath = isAbsolute(file.psk) ? file.psk : resolve(baseDir, file.psk);
  const pskSecret = readPsk(pskPath);
  const warnings = secretExposure("psk", pskPath, "anyone who reads it can join the mesh");
  const problems: string[] = [];
  let socks5Credentials: Config["socks5Credentials"];
  const socks = file.agent.socks5;
  if (opts.role === "agent" && (socks.username !== "") !== (socks.passwordFile !== "")) {
    problems.push(`agent.socks5: username and passwordFile go together (got ${socks.username ? "a username without passwordFile" : "a passwordFile without username"})`);
  } else if (opts.role === "agent" && socks.username) {
    const path = isAbsolute(socks.passwordFile) ? socks.passwordFile : resolve(baseDir, socks.passwordFile);
    let password = "";
    try {
      password = readFileSync(path, "utf8").trim();
    } catch (e) {
      problems.push(`agent.socks5.passwordFile: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (password && Buffer.byteLength(password) > 255) problems.push(`agent.socks5.passwordFile: the password in ${path} is longer than SOCKS5 allows (255 bytes)`);
    else if (!password && !problems.length) problems.push(`agent.socks5.passwordFile: ${path} is empty`);
    else if (password) {
      socks5Credentials = { username: new TextEncoder().encode(socks.username), password: new TextEncoder().encode(password) };
      warnings.push(...secretExposure("agent.socks5.passwordFile", path, "anyone who reads it can use the SOCKS5 front door"));
    }
  }
  if (opts.role === "agent" && file.agent.metadata.source === "static") {
    file.agent.metadata.static.services.forEach((svc, i) => {
      svc.ports.forEach((p, j) => {
        if (typeof p.targetPort === "string" && !svc.endpoints.some((e) => e.ports.some((ep) => ep.name === p.targetPort))) {
          problems.push(`agent.metadata.static.services[${i}].ports[${j}].targetPort: named port "${p.targetPort}" is not in any endpoint's ports`);
        }
      });
    });
  }
  if (problems.length) throw new ConfigError(problems);
  if (opts.role === "agent") warnings.push(...exposureWarnings(file));
  const rel = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  return {
    ...file,
    nodeName,
    nodeNameFrom: file.nodeName ? "file" : env.NODE_NAME ? "env" : "hostname",
    ...(file.trust ? { trustPaths: { ca: rel(file.trust.ca), cert: rel(file.trust.cert), key: rel(file.trust.key), revocationsCache: rel(file.trust.revocationsCache) } } : {}),
    ...(file.server.revocations ? { revocationsPath: rel(file.server.revocations) } : {}),
    adminListen: file.adminListen ?? DEFAULT_ADMIN[opts.role],
    pskSecret,
    ...(socks5Credentials ? { socks5Credentials } : {}),
    configPath,
    role: opts.role,
    warnings,
  };
}

/**
 * DNS and SOCKS5 listening where the agent's guard does not reach: the guard
 * drops other hosts' traffic to the bridge IP only (docs/security.md).
 */
function exposureWarnings(file: ConfigFile): string[] {
  const out: string[] = [];
  const { proxy, dns, socks5 } = file.agent;
  const check = (field: string, listen: string, enabled: boolean) => {
    const host = parseHostPort(listen)?.host ?? "";
    if (!enabled || host === "::1" || /^127\./.test(host) || host === "localhost") return;
    if (host !== proxy.bridgeDeviceIP) out.push(`${field}: ${listen} is reachable by other hosts; the agent's rules keep LAN neighbours off the bridge IP (${proxy.bridgeDeviceIP}) only`);
    else if (!proxy.enable) out.push(`${field}: ${listen} is on the bridge IP, but with agent.proxy off no rule keeps LAN neighbours off it`);
  };
  check("agent.dns.listen", dns.listen, dns.enable);
  check("agent.socks5.listen", socks5.listen, socks5.enable);
  return out;
}

/** a secret file others may read: the secret is as good as theirs */
function secretExposure(field: string, path: string, consequence: string): string[] {
  try {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) === 0) return [];
    return [`${field}: ${path} is readable by ${mode & 0o007 ? "every user" : "its group"} (mode ${mode.toString(8).padStart(3, "0")}): ${consequence}; chmod 600 ${path}`];
  } catch {
    return [];
  }
}

function readPsk(path: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError([`psk: cannot read the secret file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
  const secret = text.trim();
  if (Buffer.byteLength(secret) < MIN_PSK_BYTES) {
    throw new ConfigError([
      `psk: the secret in ${path} is too short (${Buffer.byteLength(secret)} bytes, need at least ${MIN_PSK_BYTES}); create one with \`edgemesh psk --out ${path}\``,
    ]);
  }
  return new TextEncoder().encode(secret);
}

/**
 * Reads and checks `trust` (identity v2, required to run a node) into the
 * config: a ConfigError names each problem's field. The certificate's name
 * becomes nodeName unless the file set one (then they must agree).
 */
export async function loadIdentityInto(config: Config): Promise<Config> {
  if (!config.trustPaths) {
    throw new ConfigError([
      "trust: required: this node's key and certificate under the mesh CA, as {ca, cert, key} (make them on the operator's machine with edgemesh ca init and edgemesh cert issue --node NAME; docs/deploy.md)",
    ]);
  }
  const explicit = config.nodeNameFrom === "file" ? config.nodeName : undefined;
  const { identity, problems, warnings } = await loadIdentity(config.trustPaths, { role: config.role, ...(explicit !== undefined ? { nodeName: explicit } : {}) });
  if (config.role === "agent" && config.agent.tunnel.relay.enable && identity && identity.cert.role !== "relay") {
    problems.push(`agent.tunnel.relay.enable: a relay needs a certificate with role relay, and ${config.trustPaths.cert} is a ${identity.cert.role} certificate (edgemesh cert issue --ca CA_DIR --node ${identity.cert.nodeName} --role relay --out DIR)`);
  }
  if (problems.length) throw new ConfigError(problems);
  return { ...config, identity, nodeName: identity.cert.nodeName, warnings: [...config.warnings, ...warnings] };
}

export function loadConfig(path: string, opts: LoadOptions): Config {
  const abs = resolve(path);
  let text: string;
  try {
    text = readFileSync(abs, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : (e as Error).message;
    throw new ConfigError([`config: cannot read ${abs}: ${why}`]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const pos = e.linePos?.[0];
      throw new ConfigError([`config: ${abs}${pos ? `:${pos.line}:${pos.col}` : ""}: invalid YAML: ${e.message.split("\n")[0]}`]);
    }
    throw e;
  }
  return buildConfig(doc, dirname(abs), abs, opts);
}
