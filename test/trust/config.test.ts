// `trust` in the config: the node's key and certificate are checked at start,
// and every way they can be wrong is an error naming the field and the fix.
import { expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildConfig, ConfigError, loadIdentityInto } from "../../src/config/load.ts";
import { initCa, issue } from "../../src/trust/ca.ts";
import { ensureBinary, edgemesh, tempConfigDir } from "../util/run.ts";

async function fixture() {
  const d = tempConfigDir();
  await initCa(join(d.dir, "ca"));
  await initCa(join(d.dir, "other"));
  await issue({ caDir: join(d.dir, "ca"), nodeName: "edge1", role: "agent", days: 30, outDir: join(d.dir, "certs") });
  await issue({ caDir: join(d.dir, "ca"), nodeName: "edge2", role: "agent", days: 30, outDir: join(d.dir, "certs") });
  await issue({ caDir: join(d.dir, "ca"), nodeName: "cloud", role: "server", days: 30, outDir: join(d.dir, "certs") });
  await issue({ caDir: join(d.dir, "ca"), nodeName: "old", role: "agent", days: 1, outDir: join(d.dir, "certs"), now: Math.floor(Date.now() / 1000) - 3 * 86400 });
  await issue({ caDir: join(d.dir, "ca"), nodeName: "soon", role: "agent", days: 3, outDir: join(d.dir, "certs") });
  await issue({ caDir: join(d.dir, "other"), nodeName: "stranger", role: "agent", days: 30, outDir: join(d.dir, "certs") });
  return d;
}

const trust = (name: string, ca = "ca/ca.pub", key = name) => ({ ca, cert: `certs/${name}.crt`, key: `certs/${key}.key` });
async function problems(d: { dir: string }, doc: Record<string, unknown>, role: "agent" | "server" = "agent"): Promise<string[]> {
  try {
    await loadIdentityInto(buildConfig({ psk: "psk", ...doc }, d.dir, "", { role, hostname: () => "host" }));
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

test("a good key and certificate load; the certificate's name becomes nodeName", async () => {
  const d = await fixture();
  const c = await loadIdentityInto(buildConfig({ psk: "psk", trust: trust("edge1") }, d.dir, "", { role: "agent", hostname: () => "host" }));
  expect(c.nodeName).toBe("edge1");
  expect(c.identity!.cert.role).toBe("agent");
  expect(c.warnings).toEqual([]);
  const s = await loadIdentityInto(buildConfig({ psk: "psk", trust: trust("cloud") }, d.dir, "", { role: "server" }));
  expect(s.identity!.cert.nodeName).toBe("cloud");
});

test("missing, mismatched, expired, another CA, wrong role or name: each named", async () => {
  const d = await fixture();
  expect((await problems(d, { trust: { ...trust("edge1"), cert: "certs/nope.crt" } }))[0]).toBe(`trust.cert: cannot read the certificate ${join(d.dir, "certs/nope.crt")}: ENOENT`);
  expect(await problems(d, { trust: trust("edge1", "ca/ca.pub", "edge2") })).toEqual([`trust.key: ${join(d.dir, "certs/edge2.key")} is not the key trust.cert (${join(d.dir, "certs/edge1.crt")}) was issued for`]);
  expect((await problems(d, { trust: trust("old") }))[0]).toMatch(/^trust\.cert: .*old\.crt expired on .*; issue a new one: edgemesh cert issue --ca CA_DIR --node old --out DIR/);
  expect((await problems(d, { trust: trust("stranger") }))[0]).toContain(`is signed by another CA than trust.ca (${join(d.dir, "ca/ca.pub")})`);
  expect((await problems(d, { trust: trust("cloud") }))[0]).toContain("is a server certificate; the agent needs agent or relay");
  expect((await problems(d, { trust: trust("edge1") }, "server"))[0]).toContain("is a agent certificate; the server needs server");
  expect((await problems(d, { nodeName: "edge2", trust: trust("edge1") }))[0]).toContain("is for node edge1, but this node is edge2");
  writeFileSync(join(d.dir, "certs/garbage.crt"), "hello");
  expect((await problems(d, { trust: { ...trust("edge1"), cert: "certs/garbage.crt" } }))[0]).toContain('not a edgemesh certificate (no "-----BEGIN EDGEMESH CERTIFICATE-----" line)');
});

test("agent.tunnel.relay needs a relay certificate: an agent certificate is refused naming the field; a relay one loads", async () => {
  const d = await fixture();
  await issue({ caDir: join(d.dir, "ca"), nodeName: "gw", role: "relay", days: 30, outDir: join(d.dir, "certs") });
  const relay = { tunnel: { relay: { enable: true } } };
  expect(await problems(d, { trust: trust("edge1"), agent: relay })).toEqual([
    `agent.tunnel.relay.enable: a relay needs a certificate with role relay, and ${join(d.dir, "certs/edge1.crt")} is a agent certificate (edgemesh cert issue --ca CA_DIR --node edge1 --role relay --out DIR)`,
  ]);
  expect(await problems(d, { trust: trust("gw"), agent: relay })).toEqual([]);
  // a relay certificate on an agent that does not relay is fine
  expect(await problems(d, { trust: trust("gw") })).toEqual([]);
});

test("a certificate close to expiry and a key others can read are warnings", async () => {
  const d = await fixture();
  chmodSync(join(d.dir, "certs/soon.key"), 0o644);
  const c = await loadIdentityInto(buildConfig({ psk: "psk", trust: trust("soon") }, d.dir, "", { role: "agent" }));
  expect(c.warnings[0]).toMatch(/^trust\.cert: .*soon\.crt expires in 3\.0 days/);
  expect(c.warnings[1]).toContain("is readable by others (mode 644)");
});

test("the agent refuses to start with an expired certificate: exit 1, the field and what to run", async () => {
  const d = await fixture();
  const cfg = d.write("agent.yaml", "psk: psk\ntrust: {ca: ca/ca.pub, cert: certs/old.crt, key: certs/old.key}\n");
  const r = await edgemesh(["agent", "--config", cfg], { binary: await ensureBinary() });
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("trust.cert:");
  expect(r.stderr).toContain("expired on");
  expect(r.stderr).toContain("edgemesh cert issue --ca CA_DIR --node old");
});

test("without trust the agent and the server refuse to start (identity v1 is gone): exit 1, the field and what to run", async () => {
  const d = tempConfigDir();
  const binary = await ensureBinary();
  for (const role of ["agent", "server"]) {
    const r = await edgemesh([role, "--config", d.write(`${role}.yaml`, "psk: psk\n")], { binary });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("trust: required: this node's key and certificate under the mesh CA");
    expect(r.stderr).toContain("edgemesh cert issue");
  }
});
