// The certificate test vector published in docs/tunnel.md is what this code
// makes (Ed25519 signatures are deterministic), and it verifies.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { certPeerId, decodeCertificate, signCertificate, verifyCertificate } from "../../src/trust/cert.ts";

test("docs/tunnel.md's certificate test vector", async () => {
  const doc = readFileSync(join(import.meta.dir, "../../docs/tunnel.md"), "utf8");
  const field = (name: string) => new RegExp(`- ${name}: \`([0-9A-Za-z]+)\``).exec(doc)?.[1];
  const ca = await generateKeyPairFromSeed("Ed25519", new Uint8Array(32).fill(1));
  const node = await generateKeyPairFromSeed("Ed25519", new Uint8Array(32).fill(2));
  const c = await signCertificate(ca, { nodeName: "edge1", role: "agent", serial: 0x0102030405060708n, notBefore: 1767225600, notAfter: 1798761600, publicKey: node.publicKey.raw });
  expect(Buffer.from(ca.publicKey.raw).toString("hex")).toBe(field("CA public key")!);
  expect(Buffer.from(c.bytes).toString("hex")).toBe(field("certificate")!);
  expect(certPeerId(c)).toBe(field("peer ID")!);
  const decoded = decodeCertificate(new Uint8Array(Buffer.from(field("certificate")!, "hex")));
  expect(await verifyCertificate(decoded, ca.publicKey.raw, 1780000000)).toEqual({ ok: true });
});
