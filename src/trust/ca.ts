// The operator's side of identity v2: a CA directory (its key never leaves
// the operator's machine), node keys, certificates and the revocation list,
// as files. Secrets are written mode 0600 and never overwritten.
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPair, privateKeyFromRaw } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { armor, dearmor } from "./armor.ts";
import { NOT_BEFORE_SLACK_S, signCertificate, type Certificate, type Role } from "./cert.ts";
import { openRevocationList, signRevocationList, type Revocation, type RevocationList } from "./revocation.ts";

export class TrustFileError extends Error {}

/** a file's text, or an error naming it and why it cannot be read */
export function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new TrustFileError(`cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** writes a new file (never replacing one) with the given mode from its first byte */
function writeNew(path: string, text: string, mode: number, what: string): void {
  try {
    writeFileSync(path, text, { mode, flag: "wx" });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TrustFileError(`cannot write the ${what} ${path}: ${code === "EEXIST" ? "it exists (never replaced; remove it first)" : code ?? (e as Error).message}`);
  }
}

export const CA_KEY = "ca.key";
export const CA_PUB = "ca.pub";
/** one line per certificate issued: serial, node, role, notBefore, notAfter (for the operator's records) */
export const ISSUED_LOG = "issued.log";

export async function initCa(dir: string): Promise<{ key: string; pub: string }> {
  const key = join(dir, CA_KEY);
  const pub = join(dir, CA_PUB);
  for (const p of [key, pub]) if (existsSync(p)) throw new TrustFileError(`${p} exists: a CA is never replaced (its certificates would stop verifying)`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const k = await generateKeyPair("Ed25519");
  writeNew(key, armor("EDGEMESH CA PRIVATE KEY", k.raw), 0o600, "CA key");
  writeNew(pub, armor("EDGEMESH CA PUBLIC KEY", k.publicKey.raw), 0o644, "CA public key");
  return { key, pub };
}

export function loadCaKey(dir: string): PrivateKey {
  const path = join(dir, CA_KEY);
  const raw = dearmorFile(path, "EDGEMESH CA PRIVATE KEY", "CA key");
  if (raw.length !== 64) throw new TrustFileError(`${path}: not an Ed25519 key`);
  return privateKeyFromRaw(raw);
}

export function loadCaPublic(path: string): Uint8Array {
  const raw = dearmorFile(path, "EDGEMESH CA PUBLIC KEY", "CA public key");
  if (raw.length !== 32) throw new TrustFileError(`${path}: not an Ed25519 public key`);
  return raw;
}

export function loadNodeKey(path: string): PrivateKey {
  const raw = dearmorFile(path, "EDGEMESH PRIVATE KEY", "node key");
  if (raw.length !== 64) throw new TrustFileError(`${path}: not an Ed25519 key`);
  return privateKeyFromRaw(raw);
}

export function loadPublicKey(path: string): Uint8Array {
  const raw = dearmorFile(path, "EDGEMESH PUBLIC KEY", "public key");
  if (raw.length !== 32) throw new TrustFileError(`${path}: not an Ed25519 public key`);
  return raw;
}

export function dearmorFile(path: string, label: Parameters<typeof dearmor>[0], what: string): Uint8Array {
  const text = readText(path, what);
  try {
    return dearmor(label, text);
  } catch (e) {
    throw new TrustFileError(`${path}: ${(e as Error).message}`);
  }
}

/** a node key made on the node: FILE (0600) and FILE.pub for `cert issue --pubkey` */
export async function keygen(out: string): Promise<{ key: string; pub: string }> {
  const k = await generateKeyPair("Ed25519");
  const pub = `${out}.pub`;
  if (existsSync(pub)) throw new TrustFileError(`cannot write the public key ${pub}: it exists (never replaced; remove it first)`);
  writeNew(out, armor("EDGEMESH PRIVATE KEY", k.raw), 0o600, "node key");
  writeNew(pub, armor("EDGEMESH PUBLIC KEY", k.publicKey.raw), 0o644, "public key");
  return { key: out, pub };
}

export interface IssueOptions {
  caDir: string;
  nodeName: string;
  role: Role;
  days: number;
  outDir: string;
  /** sign this public key (made on the node) instead of making a key here */
  publicKeyFile?: string;
  now?: number;
}

export async function issue(o: IssueOptions): Promise<{ cert: Certificate; certPath: string; keyPath?: string }> {
  const ca = loadCaKey(o.caDir);
  let publicKey: Uint8Array;
  let keyText: string | undefined;
  if (o.publicKeyFile) publicKey = loadPublicKey(o.publicKeyFile);
  else {
    const k = await generateKeyPair("Ed25519");
    publicKey = k.publicKey.raw;
    keyText = armor("EDGEMESH PRIVATE KEY", k.raw);
  }
  const now = o.now ?? Math.floor(Date.now() / 1000);
  const cert = await signCertificate(ca, {
    nodeName: o.nodeName,
    role: o.role,
    serial: randomBytes(8).readBigUInt64BE(0) & 0x7fffffffffffffffn,
    notBefore: now - NOT_BEFORE_SLACK_S,
    notAfter: now + o.days * 86400,
    publicKey,
  });
  mkdirSync(o.outDir, { recursive: true });
  const certPath = join(o.outDir, `${o.nodeName}.crt`);
  const keyPath = keyText ? join(o.outDir, `${o.nodeName}.key`) : undefined;
  if (existsSync(certPath)) throw new TrustFileError(`cannot write the certificate ${certPath}: it exists (never replaced; remove it first)`);
  if (keyPath && keyText) writeNew(keyPath, keyText, 0o600, "node key");
  writeNew(certPath, armor("EDGEMESH CERTIFICATE", cert.bytes), 0o644, "certificate");
  appendFileSync(join(o.caDir, ISSUED_LOG), `${cert.serial} ${cert.nodeName} ${cert.role} ${cert.notBefore} ${cert.notAfter}\n`, { mode: 0o600 });
  return { cert, certPath, keyPath };
}

/** adds an entry to the list in `out` (made when absent) and writes it back atomically */
export async function revoke(caDir: string, entry: { nodeName: string } | { serial: bigint }, out: string, now = Math.floor(Date.now() / 1000)): Promise<RevocationList> {
  const ca = loadCaKey(caDir);
  let entries: Revocation[] = [];
  let issuedAt = now;
  if (existsSync(out)) {
    const old = await openRevocationList(dearmorFile(out, "EDGEMESH REVOCATION LIST", "revocation list"), ca.publicKey.raw);
    entries = old.entries;
    // newer lists replace older ones by issue time: always move forward
    issuedAt = Math.max(now, old.issuedAt + 1);
  }
  entries.push("serial" in entry ? { kind: "serial", serial: entry.serial } : { kind: "name", nodeName: entry.nodeName, revokedAt: issuedAt });
  const list = await signRevocationList(ca, issuedAt, entries);
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, armor("EDGEMESH REVOCATION LIST", list.bytes), { mode: 0o644 });
  renameSync(tmp, out);
  return list;
}
