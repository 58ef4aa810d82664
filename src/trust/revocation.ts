// The CA-signed revocation list. An entry names a certificate serial, or a
// node name with the time it was revoked: every certificate of that name
// issued at or before that time (notBefore + NOT_BEFORE_SLACK_S) is revoked,
// so a node given a new key and certificate afterwards (a stolen device
// replaced) is not.
//
//   "EMR1"            magic and version
//   issuedAt          u64 big-endian, Unix seconds (newer lists replace older)
//   caKeyId           8 bytes, as in certificates
//   count             u32 big-endian
//   entries           kind u8: 1 = serial (u64), 2 = name (u64 revokedAt, u8 length, name)
//   signature         64 bytes: Ed25519 by the CA over everything before it
import type { PrivateKey } from "@libp2p/interface";
import { publicKeyFromRaw } from "@libp2p/crypto/keys";
import { isDnsSubdomain } from "../model/grammar.ts";
import { caKeyIdOf, NOT_BEFORE_SLACK_S, type CertFields } from "./cert.ts";

export const CRL_MAGIC = "EMR1";
/** entries a list may hold; far above a fleet's needs, and it bounds what we parse */
export const MAX_REVOCATIONS = 100_000;

export type Revocation = { kind: "serial"; serial: bigint } | { kind: "name"; nodeName: string; revokedAt: number };

export interface RevocationList {
  issuedAt: number;
  caKeyId: Uint8Array;
  entries: Revocation[];
  bytes: Uint8Array;
}

export class RevocationError extends Error {}

export async function signRevocationList(ca: PrivateKey, issuedAt: number, entries: Revocation[]): Promise<RevocationList> {
  if (entries.length > MAX_REVOCATIONS) throw new RevocationError(`more than ${MAX_REVOCATIONS} entries`);
  const parts: Uint8Array[] = [];
  const head = new Uint8Array(4 + 8 + 8 + 4);
  const hv = new DataView(head.buffer);
  head.set(new TextEncoder().encode(CRL_MAGIC));
  hv.setBigUint64(4, BigInt(issuedAt));
  const caKeyId = caKeyIdOf(ca.publicKey.raw);
  head.set(caKeyId, 12);
  hv.setUint32(20, entries.length);
  parts.push(head);
  for (const e of entries) {
    if (e.kind === "serial") {
      const b = new Uint8Array(9);
      b[0] = 1;
      new DataView(b.buffer).setBigUint64(1, e.serial);
      parts.push(b);
    } else {
      if (!isDnsSubdomain(e.nodeName)) throw new RevocationError(`node name ${JSON.stringify(e.nodeName)} is not a DNS-1123 subdomain`);
      const name = new TextEncoder().encode(e.nodeName);
      const b = new Uint8Array(10 + name.length);
      b[0] = 2;
      new DataView(b.buffer).setBigUint64(1, BigInt(e.revokedAt));
      b[9] = name.length;
      b.set(name, 10);
      parts.push(b);
    }
  }
  const tbs = new Uint8Array(Buffer.concat(parts));
  const signature = await ca.sign(tbs);
  const bytes = new Uint8Array(Buffer.concat([tbs, signature]));
  return { issuedAt, caKeyId, entries, bytes };
}

/** parses and verifies a list against the CA's public key */
export async function openRevocationList(bytes: Uint8Array, caPublicKey: Uint8Array): Promise<RevocationList> {
  if (bytes.length < 24 + 64) throw new RevocationError("too short");
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== CRL_MAGIC) throw new RevocationError("not an edgemesh revocation list (magic EMR1)");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const issuedAt = Number(v.getBigUint64(4));
  const caKeyId = bytes.slice(12, 20);
  if (!Buffer.from(caKeyId).equals(Buffer.from(caKeyIdOf(caPublicKey)))) throw new RevocationError("signed by another CA");
  const count = v.getUint32(20);
  if (count > MAX_REVOCATIONS) throw new RevocationError(`more than ${MAX_REVOCATIONS} entries`);
  const end = bytes.length - 64;
  const entries: Revocation[] = [];
  let off = 24;
  for (let i = 0; i < count; i++) {
    if (off >= end) throw new RevocationError("truncated");
    const kind = bytes[off]!;
    if (kind === 1 && off + 9 <= end) {
      entries.push({ kind: "serial", serial: v.getBigUint64(off + 1) });
      off += 9;
    } else if (kind === 2 && off + 10 <= end) {
      const revokedAt = Number(v.getBigUint64(off + 1));
      const len = bytes[off + 9]!;
      if (off + 10 + len > end) throw new RevocationError("truncated");
      const nodeName = new TextDecoder("ascii").decode(bytes.subarray(off + 10, off + 10 + len));
      if (!isDnsSubdomain(nodeName)) throw new RevocationError("an entry's node name is not a DNS-1123 subdomain");
      entries.push({ kind: "name", nodeName, revokedAt });
      off += 10 + len;
    } else throw new RevocationError(`bad entry kind ${kind}`);
  }
  if (off !== end) throw new RevocationError("bytes after the last entry");
  let good = false;
  try {
    good = await publicKeyFromRaw(caPublicKey).verify(bytes.subarray(0, end), bytes.subarray(end));
  } catch {
    good = false;
  }
  if (!good) throw new RevocationError("the CA's signature does not verify");
  return { issuedAt, caKeyId, entries, bytes: bytes.slice() };
}

/** the entry that revokes a certificate, if any */
export function revokedBy(list: Pick<RevocationList, "entries"> | undefined, c: Pick<CertFields, "serial" | "nodeName" | "notBefore">): Revocation | undefined {
  return list?.entries.find((e) => (e.kind === "serial" ? e.serial === c.serial : e.nodeName === c.nodeName && c.notBefore + NOT_BEFORE_SLACK_S <= e.revokedAt));
}
