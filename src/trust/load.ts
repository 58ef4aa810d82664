// Loads and checks this node's identity (config `trust`) at start: every way
// the files can be wrong is a config error naming the field and the fix.
import { statSync } from "node:fs";
import type { PrivateKey } from "@libp2p/interface";
import { dearmorFile, loadCaPublic, loadNodeKey, TrustFileError } from "./ca.ts";
import { decodeCertificate, verifyCertificate, type Certificate, type Role } from "./cert.ts";

export interface NodeIdentity {
  caPublicKey: Uint8Array;
  cert: Certificate;
  key: PrivateKey;
}

/** days before expiry from which the node warns at start (and the status shows it) */
export const EXPIRY_WARNING_DAYS = 14;

export interface TrustPaths {
  ca: string;
  cert: string;
  key: string;
  /** agents: where the newest revocation list is kept */
  revocationsCache?: string;
}

export async function loadIdentity(paths: TrustPaths, want: { role: "agent" | "server"; nodeName?: string }, now = Math.floor(Date.now() / 1000)): Promise<{ identity: NodeIdentity; problems: string[]; warnings: string[] }> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const attempt = <T,>(field: string, f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      problems.push(`trust.${field}: ${e instanceof TrustFileError ? e.message : (e as Error).message}`);
      return undefined;
    }
  };
  const caPublicKey = attempt("ca", () => loadCaPublic(paths.ca));
  const cert = attempt("cert", () => decodeCertificate(dearmorFile(paths.cert, "EDGEMESH CERTIFICATE", "certificate")));
  const key = attempt("key", () => loadNodeKey(paths.key));
  if (caPublicKey && cert) {
    const v = await verifyCertificate(cert, caPublicKey, now);
    if (!v.ok) {
      const fix = `issue a new one: edgemesh cert issue --ca CA_DIR --node ${cert.nodeName}${cert.role === "agent" ? "" : ` --role ${cert.role}`} --out DIR (on the operator's machine)`;
      problems.push(`trust.cert: ${paths.cert} ${v.reason === "signed by another CA" ? `is signed by another CA than trust.ca (${paths.ca})` : v.reason}; ${fix}`);
    } else {
      const left = (cert.notAfter - now) / 86400;
      if (left <= EXPIRY_WARNING_DAYS) warnings.push(`trust.cert: ${paths.cert} expires in ${left.toFixed(1)} days (${new Date(cert.notAfter * 1000).toISOString()}); issue a new one with edgemesh cert issue`);
    }
  }
  if (cert && key && !Buffer.from(key.publicKey.raw).equals(Buffer.from(cert.publicKey))) {
    problems.push(`trust.key: ${paths.key} is not the key trust.cert (${paths.cert}) was issued for`);
  }
  if (cert) {
    const roles: Role[] = want.role === "server" ? ["server"] : ["agent", "relay"];
    if (!roles.includes(cert.role)) problems.push(`trust.cert: ${paths.cert} is a ${cert.role} certificate; the ${want.role} needs ${roles.join(" or ")}`);
    if (want.nodeName !== undefined && want.nodeName !== cert.nodeName) problems.push(`trust.cert: ${paths.cert} is for node ${cert.nodeName}, but this node is ${want.nodeName}`);
  }
  try {
    const mode = statSync(paths.key).mode & 0o777;
    if (mode & 0o077) warnings.push(`trust.key: ${paths.key} is readable by others (mode ${mode.toString(8)}): whoever reads it can act as this node; chmod 600 ${paths.key}`);
  } catch {
    // reported above
  }
  return { identity: { caPublicKey: caPublicKey!, cert: cert!, key: key! }, problems, warnings };
}
