// Node certificates (identity v2): the mesh CA binds a node name, a role, the
// node's Ed25519 public key (and so its peer ID), a validity window and a
// serial. A small fixed layout, versioned by its magic; docs/tunnel.md has the
// layout and a test vector.
//
//   "EMC1"            magic and version (4 bytes)
//   role              u8: 1 agent, 2 server, 3 relay
//   serial            u64 big-endian (random, made by `cert issue`)
//   notBefore         u64 big-endian, Unix seconds
//   notAfter          u64 big-endian, Unix seconds
//   caKeyId           8 bytes: the first 8 bytes of SHA-256(CA public key)
//   publicKey         32 bytes: the node's Ed25519 public key
//   nameLength        u8, then the node name (a DNS-1123 subdomain, ASCII)
//   signature         64 bytes: Ed25519 by the CA over everything before it
import { createHash } from "node:crypto";
import { publicKeyFromRaw } from "@libp2p/crypto/keys";
import { peerIdFromPublicKey } from "@libp2p/peer-id";
import type { PrivateKey } from "@libp2p/interface";
import { isDnsSubdomain } from "../model/grammar.ts";

export const CERT_MAGIC = "EMC1";
/** clock skew between the operator's machine and the nodes: a certificate's notBefore is its issue time minus this */
export const NOT_BEFORE_SLACK_S = 300;
export type Role = "agent" | "server" | "relay";
const ROLES: Role[] = ["agent", "server", "relay"];
const HEADER = 4 + 1 + 8 + 8 + 8 + 8 + 32 + 1;
const SIGNATURE = 64;

export interface CertFields {
  nodeName: string;
  role: Role;
  serial: bigint;
  /** Unix seconds */
  notBefore: number;
  notAfter: number;
  /** first 8 bytes of SHA-256 of the issuing CA's public key */
  caKeyId: Uint8Array;
  /** the node's raw Ed25519 public key (32 bytes) */
  publicKey: Uint8Array;
}

export interface Certificate extends CertFields {
  /** the signed bytes (everything before the signature) */
  tbs: Uint8Array;
  signature: Uint8Array;
  /** the whole encoding */
  bytes: Uint8Array;
}

export class CertError extends Error {}

export function caKeyIdOf(caPublicKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(caPublicKey).digest().subarray(0, 8));
}

/** the signed part of a certificate (exported for tools that sign elsewhere) */
export function certificateTbs(f: CertFields): Uint8Array {
  const name = new TextEncoder().encode(f.nodeName);
  if (!isDnsSubdomain(f.nodeName) || name.length > 253) throw new CertError(`node name ${JSON.stringify(f.nodeName)} is not a DNS-1123 subdomain`);
  if (f.publicKey.length !== 32 || f.caKeyId.length !== 8) throw new CertError("public key must be 32 bytes and the CA key ID 8");
  const out = new Uint8Array(HEADER + name.length);
  const v = new DataView(out.buffer);
  out.set(new TextEncoder().encode(CERT_MAGIC), 0);
  out[4] = ROLES.indexOf(f.role) + 1;
  v.setBigUint64(5, f.serial);
  v.setBigUint64(13, BigInt(f.notBefore));
  v.setBigUint64(21, BigInt(f.notAfter));
  out.set(f.caKeyId, 29);
  out.set(f.publicKey, 37);
  out[69] = name.length;
  out.set(name, 70);
  return out;
}

/** the CA signs a certificate */
export async function signCertificate(ca: PrivateKey, f: Omit<CertFields, "caKeyId">): Promise<Certificate> {
  const fields = { ...f, caKeyId: caKeyIdOf(ca.publicKey.raw) };
  const tbs = certificateTbs(fields);
  const signature = await ca.sign(tbs);
  const bytes = new Uint8Array(tbs.length + SIGNATURE);
  bytes.set(tbs);
  bytes.set(signature, tbs.length);
  return { ...fields, tbs, signature, bytes };
}

/** parses the layout; says which part is wrong (nothing is verified here) */
export function decodeCertificate(bytes: Uint8Array): Certificate {
  if (bytes.length < HEADER + 1 + SIGNATURE) throw new CertError(`too short (${bytes.length} bytes)`);
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== CERT_MAGIC) throw new CertError("not an edgemesh certificate of a version this build reads (magic EMC1)");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const role = ROLES[bytes[4]! - 1];
  if (!role) throw new CertError(`unknown role ${bytes[4]}`);
  const nameLength = bytes[69]!;
  if (bytes.length !== HEADER + nameLength + SIGNATURE) throw new CertError(`length ${bytes.length} does not match its name length ${nameLength}`);
  const nodeName = new TextDecoder("ascii").decode(bytes.subarray(70, 70 + nameLength));
  if (!isDnsSubdomain(nodeName)) throw new CertError("node name is not a DNS-1123 subdomain");
  const notBefore = Number(v.getBigUint64(13));
  const notAfter = Number(v.getBigUint64(21));
  if (!Number.isSafeInteger(notBefore) || !Number.isSafeInteger(notAfter)) throw new CertError("validity out of range");
  const tbs = bytes.slice(0, HEADER + nameLength);
  return {
    nodeName,
    role,
    serial: v.getBigUint64(5),
    notBefore,
    notAfter,
    caKeyId: bytes.slice(29, 37),
    publicKey: bytes.slice(37, 69),
    tbs,
    signature: bytes.slice(HEADER + nameLength),
    bytes: bytes.slice(),
  };
}

/** the libp2p peer ID the certificate's key gives */
export function certPeerId(c: CertFields): string {
  return peerIdFromPublicKey(publicKeyFromRaw(c.publicKey)).toString();
}

export type Verdict = { ok: true } | { ok: false; reason: string };

/**
 * Checks a certificate against the CA's public key and the time: signature,
 * issuer, validity window. Revocation and the peer ID are the caller's.
 */
export async function verifyCertificate(c: Certificate, caPublicKey: Uint8Array, nowSeconds = Math.floor(Date.now() / 1000)): Promise<Verdict> {
  if (!Buffer.from(c.caKeyId).equals(Buffer.from(caKeyIdOf(caPublicKey)))) return { ok: false, reason: "signed by another CA" };
  let good = false;
  try {
    good = await publicKeyFromRaw(caPublicKey).verify(c.tbs, c.signature);
  } catch {
    good = false;
  }
  if (!good) return { ok: false, reason: "the CA's signature does not verify" };
  if (nowSeconds < c.notBefore) return { ok: false, reason: `not valid before ${new Date(c.notBefore * 1000).toISOString()}` };
  if (nowSeconds >= c.notAfter) return { ok: false, reason: `expired on ${new Date(c.notAfter * 1000).toISOString()}` };
  return { ok: true };
}
