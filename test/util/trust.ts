// Identity v2 for tests that run the binary: a mesh CA in a test directory
// and a key and certificate per node name, made synchronously (node:crypto's
// Ed25519; the same bytes `edgemesh cert issue` writes), and the `trust` line
// of a config pointing at them.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { armor, dearmor } from "../../src/trust/armor.ts";
import { caKeyIdOf, certificateTbs, NOT_BEFORE_SLACK_S, type Role } from "../../src/trust/cert.ts";

function rawPair(key: KeyObject): { seed: Buffer; pub: Buffer } {
  const jwk = key.export({ format: "jwk" }) as { d: string; x: string };
  return { seed: Buffer.from(jwk.d, "base64url"), pub: Buffer.from(jwk.x, "base64url") };
}

function caOf(dir: string): { key: KeyObject; pub: Buffer } {
  const keyPath = join(dir, "ca", "ca.key");
  if (!existsSync(keyPath)) {
    mkdirSync(join(dir, "ca"), { recursive: true, mode: 0o700 });
    const { seed, pub } = rawPair(generateKeyPairSync("ed25519").privateKey);
    writeFileSync(keyPath, armor("EDGEMESH CA PRIVATE KEY", Buffer.concat([seed, pub])), { mode: 0o600 });
    writeFileSync(join(dir, "ca", "ca.pub"), armor("EDGEMESH CA PUBLIC KEY", pub));
  }
  const raw = dearmor("EDGEMESH CA PRIVATE KEY", readFileSync(keyPath, "utf8"));
  const seed = Buffer.from(raw.subarray(0, 32));
  const pub = Buffer.from(raw.subarray(32));
  const key = createPrivateKey({ key: { kty: "OKP", crv: "Ed25519", d: seed.toString("base64url"), x: pub.toString("base64url") }, format: "jwk" });
  return { key, pub };
}

/** issues (once) NAME's key and certificate under DIR's CA; returns the paths */
export function testCertificate(dir: string, name: string, role: Role = "agent", days = 30): { ca: string; cert: string; key: string } {
  const paths = { ca: join(dir, "ca", "ca.pub"), cert: join(dir, "certs", `${name}.crt`), key: join(dir, "certs", `${name}.key`) };
  const ca = caOf(dir);
  if (existsSync(paths.cert)) return paths;
  mkdirSync(join(dir, "certs"), { recursive: true });
  const { seed, pub } = rawPair(generateKeyPairSync("ed25519").privateKey);
  const now = Math.floor(Date.now() / 1000);
  const tbs = certificateTbs({
    nodeName: name,
    role,
    serial: randomBytes(8).readBigUInt64BE(0) & 0x7fffffffffffffffn,
    notBefore: now - NOT_BEFORE_SLACK_S,
    notAfter: now + days * 86400,
    caKeyId: caKeyIdOf(ca.pub),
    publicKey: pub,
  });
  const signature = sign(null, tbs, ca.key);
  writeFileSync(paths.key, armor("EDGEMESH PRIVATE KEY", Buffer.concat([seed, pub])), { mode: 0o600 });
  writeFileSync(paths.cert, armor("EDGEMESH CERTIFICATE", Buffer.concat([tbs, signature])));
  return paths;
}

/** the `trust:` line of NAME's config (absolute paths; its revocation cache in DIR) */
export function trustLine(dir: string, name: string, role: Role = "agent"): string {
  const p = testCertificate(dir, name, role);
  return `trust: {ca: ${p.ca}, cert: ${p.cert}, key: ${p.key}, revocationsCache: ${join(dir, `${name}.revocations`)}}`;
}
