// Identity v2 certificates and revocation lists: sign, verify, and every way
// a certificate can be wrong.
import { expect, test } from "bun:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { certPeerId, decodeCertificate, signCertificate, verifyCertificate, NOT_BEFORE_SLACK_S } from "../../src/trust/cert.ts";
import { openRevocationList, revokedBy, signRevocationList } from "../../src/trust/revocation.ts";
import { armor, dearmor } from "../../src/trust/armor.ts";

const NOW = 1_800_000_000;

async function setup() {
  const ca = await generateKeyPair("Ed25519");
  const node = await generateKeyPair("Ed25519");
  const cert = await signCertificate(ca, { nodeName: "edge3", role: "agent", serial: 42n, notBefore: NOW - 10, notAfter: NOW + 86400, publicKey: node.publicKey.raw });
  return { ca, node, cert };
}

test("a certificate round-trips through its bytes and its armor, verifies, and gives the node's peer ID", async () => {
  const { ca, node, cert } = await setup();
  const back = decodeCertificate(dearmor("EDGEMESH CERTIFICATE", armor("EDGEMESH CERTIFICATE", cert.bytes)));
  expect(back).toMatchObject({ nodeName: "edge3", role: "agent", serial: 42n, notBefore: NOW - 10, notAfter: NOW + 86400 });
  expect(await verifyCertificate(back, ca.publicKey.raw, NOW)).toEqual({ ok: true });
  expect(certPeerId(back)).toBe(peerIdFromPrivateKey(node).toString());
});

test("a tampered byte anywhere, another CA, expired, not yet valid: each refused with its reason", async () => {
  const { ca, cert } = await setup();
  for (let i = 0; i < cert.bytes.length; i++) {
    const bad = cert.bytes.slice();
    bad[i]! ^= 0x01;
    let verdict: { ok: boolean; reason?: string };
    try {
      verdict = await verifyCertificate(decodeCertificate(bad), ca.publicKey.raw, NOW);
    } catch {
      verdict = { ok: false, reason: "undecodable" };
    }
    expect(verdict.ok).toBe(false);
  }
  const other = await generateKeyPair("Ed25519");
  expect(await verifyCertificate(cert, other.publicKey.raw, NOW)).toEqual({ ok: false, reason: "signed by another CA" });
  // same key ID, signature by another key: a forged certificate
  const forged = await signCertificate(other, { ...cert });
  expect((await verifyCertificate(decodeCertificate(new Uint8Array([...forged.tbs.slice(0, 29), ...cert.caKeyId, ...forged.tbs.slice(37), ...forged.signature])), ca.publicKey.raw, NOW)).ok).toBe(false);
  expect(await verifyCertificate(cert, ca.publicKey.raw, NOW + 86400)).toEqual({ ok: false, reason: `expired on ${new Date((NOW + 86400) * 1000).toISOString()}` });
  expect(((await verifyCertificate(cert, ca.publicKey.raw, NOW - 3600)) as { reason: string }).reason).toStartWith("not valid before");
});

test("names and roles are checked when decoding; a key of the wrong size cannot be signed", async () => {
  const { ca, node } = await setup();
  await expect(signCertificate(ca, { nodeName: "Edge_3", role: "agent", serial: 1n, notBefore: 0, notAfter: 1, publicKey: node.publicKey.raw })).rejects.toThrow("not a DNS-1123 subdomain");
  await expect(signCertificate(ca, { nodeName: "edge3", role: "agent", serial: 1n, notBefore: 0, notAfter: 1, publicKey: new Uint8Array(31) })).rejects.toThrow("32 bytes");
  const { cert } = await setup();
  const badRole = cert.bytes.slice();
  badRole[4] = 9;
  expect(() => decodeCertificate(badRole)).toThrow("unknown role 9");
  expect(() => decodeCertificate(cert.bytes.slice(0, 50))).toThrow("too short");
  expect(() => dearmor("EDGEMESH CERTIFICATE", armor("EDGEMESH PRIVATE KEY", node.raw))).toThrow("holds a edgemesh private key, not a edgemesh certificate");
});

test("revocation by serial, and by name for certificates issued up to then (a replacement issued later is not revoked)", async () => {
  const { ca, node, cert } = await setup();
  const list = await signRevocationList(ca, NOW, [{ kind: "serial", serial: 7n }, { kind: "name", nodeName: "edge3", revokedAt: NOW }]);
  const opened = await openRevocationList(list.bytes, ca.publicKey.raw);
  expect(opened.issuedAt).toBe(NOW);
  expect(opened.entries).toEqual(list.entries);
  // cert was issued at NOW - 10 + NOT_BEFORE_SLACK_S? its notBefore is NOW - 10: issued before the revocation
  expect(revokedBy(opened, { ...cert, notBefore: NOW - NOT_BEFORE_SLACK_S })).toMatchObject({ kind: "name", nodeName: "edge3" });
  const replacement = await signCertificate(ca, { nodeName: "edge3", role: "agent", serial: 43n, notBefore: NOW + 60 - NOT_BEFORE_SLACK_S, notAfter: NOW + 86400, publicKey: node.publicKey.raw });
  expect(revokedBy(opened, replacement)).toBeUndefined();
  expect(revokedBy(opened, { ...replacement, serial: 7n })).toMatchObject({ kind: "serial", serial: 7n });
  // tampering or another CA: refused
  const bad = list.bytes.slice();
  bad[bad.length - 70]! ^= 1;
  await expect(openRevocationList(bad, ca.publicKey.raw)).rejects.toThrow();
  const other = await generateKeyPair("Ed25519");
  await expect(openRevocationList(list.bytes, other.publicKey.raw)).rejects.toThrow("signed by another CA");
});
