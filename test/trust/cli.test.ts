// The CA and certificate commands of the binary: what they write, with which
// modes, what they refuse, and that the files verify against each other.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "bun:test";
import { edgemesh } from "../util/run.ts";
import { tempDir } from "../util/temp.ts";
import { dearmor } from "../../src/trust/armor.ts";
import { certPeerId, decodeCertificate, verifyCertificate } from "../../src/trust/cert.ts";
import { openRevocationList, revokedBy } from "../../src/trust/revocation.ts";
import { loadCaPublic, loadNodeKey } from "../../src/trust/ca.ts";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";

const mode = (p: string) => statSync(p).mode & 0o777;

test("ca init, cert issue (a key made here, or on the node), ca revoke: files, modes, never overwritten, verifying", async () => {
  const d = tempDir("edgemesh-ca");
  const ca = join(d, "ca");
  expect((await edgemesh(["ca", "init", "--dir", ca])).code).toBe(0);
  expect(mode(join(ca, "ca.key"))).toBe(0o600);
  const again = await edgemesh(["ca", "init", "--dir", ca]);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain("exists: a CA is never replaced");
  const caPub = loadCaPublic(join(ca, "ca.pub"));

  const out = join(d, "out");
  const issued = await edgemesh(["cert", "issue", "--ca", ca, "--node", "edge1", "--days", "30", "--out", out]);
  expect(issued.code).toBe(0);
  expect(mode(join(out, "edge1.key"))).toBe(0o600);
  const cert = decodeCertificate(dearmor("EDGEMESH CERTIFICATE", readFileSync(join(out, "edge1.crt"), "utf8")));
  expect(cert).toMatchObject({ nodeName: "edge1", role: "agent" });
  expect(cert.notAfter - cert.notBefore).toBe(30 * 86400 + 300);
  expect(await verifyCertificate(cert, caPub)).toEqual({ ok: true });
  expect(certPeerId(cert)).toBe(peerIdFromPrivateKey(loadNodeKey(join(out, "edge1.key"))).toString());
  expect(issued.stderr).toContain(`peer ID ${certPeerId(cert)}`);
  expect((await edgemesh(["cert", "issue", "--ca", ca, "--node", "edge1", "--out", out])).code).toBe(1);

  // a key made on the node: only its public half reaches the CA
  const nodeKey = join(d, "node.key");
  expect((await edgemesh(["cert", "keygen", "--out", nodeKey])).code).toBe(0);
  expect(mode(nodeKey)).toBe(0o600);
  expect((await edgemesh(["cert", "issue", "--ca", ca, "--node", "cloud", "--role", "server", "--pubkey", `${nodeKey}.pub`, "--out", out])).code).toBe(0);
  expect(existsSync(join(out, "cloud.key"))).toBe(false);
  const server = decodeCertificate(dearmor("EDGEMESH CERTIFICATE", readFileSync(join(out, "cloud.crt"), "utf8")));
  expect(server.role).toBe("server");
  expect(certPeerId(server)).toBe(peerIdFromPrivateKey(loadNodeKey(nodeKey)).toString());

  const crl = join(d, "revoked");
  expect((await edgemesh(["ca", "revoke", "--ca", ca, "--node", "edge1", "--out", crl])).code).toBe(0);
  expect((await edgemesh(["ca", "revoke", "--ca", ca, "--serial", String(server.serial), "--out", crl])).code).toBe(0);
  const list = await openRevocationList(dearmor("EDGEMESH REVOCATION LIST", readFileSync(crl, "utf8")), caPub);
  expect(list.entries).toHaveLength(2);
  expect(revokedBy(list, cert)).toMatchObject({ kind: "name", nodeName: "edge1" });
  expect(revokedBy(list, server)).toMatchObject({ kind: "serial" });
});

test("bad flags are usage errors (exit 2) naming the flag", async () => {
  const d = tempDir("edgemesh-ca");
  const cases: Array<[string[], string]> = [
    [["ca"], '"ca" needs a subcommand (init, revoke)'],
    [["cert", "sign"], 'unknown command "cert sign"'],
    [["cert", "issue", "--ca", d, "--node", "Edge_1", "--out", d], '--node: "Edge_1" is not a node name'],
    [["cert", "issue", "--ca", d, "--node", "e1", "--role", "boss", "--out", d], '--role: "boss" is not agent, server or relay'],
    [["cert", "issue", "--ca", d, "--node", "e1", "--days", "0", "--out", d], "--days: expected whole days"],
    [["ca", "revoke", "--ca", d, "--out", join(d, "x")], "give exactly one of --node NAME or --serial N"],
    [["cert", "issue", "--node", "e1", "--out", d], "--ca is required"],
  ];
  for (const [argv, msg] of cases) {
    const r = await edgemesh(argv);
    expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
    expect(r.stderr).toContain(msg);
  }
  const missing = await edgemesh(["cert", "issue", "--ca", join(d, "nope"), "--node", "e1", "--out", d]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain(`cannot read the CA key ${join(d, "nope", "ca.key")}: ENOENT`);
});
