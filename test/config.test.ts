import { describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildConfig, loadConfig, ConfigError, type LoadOptions } from "../src/config/load.ts";
import { ROOT, tempConfigDir } from "./util/run.ts";
import { tempDir } from "./util/temp.ts";

const t = tempConfigDir();
const opts: LoadOptions = { role: "agent", env: {}, hostname: () => "Host-A" };

function problems(doc: unknown, o: LoadOptions = opts): string[] {
  try {
    buildConfig(doc, t.dir, "", o);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("config defaults", () => {
  test("only psk given: every default of DESIGN §2", () => {
    const c = buildConfig({ psk: "psk" }, t.dir, "", opts);
    expect(c.nodeName).toBe("host-a");
    expect(c.logLevel).toBe("info");
    expect(c.adminListen).toBe("127.0.0.1:10556");
    expect(c.server.listenPort).toBe(20004);
    expect(c.server.listenAddresses).toEqual(["0.0.0.0"]);
    expect(c.server.advertiseAddresses).toEqual([]);
    expect(c.agent.servers).toEqual([]);
    expect(c.agent.tunnel.listenPort).toBe(20006);
    expect(c.agent.metadata.source).toBe("kubernetes");
    expect(c.agent.metadata.kubernetes).toEqual({ server: "http://127.0.0.1:10550", kubeconfig: "", inCluster: false, maxListPageMiB: 64, maxEventKiB: 4096, maxObjects: 100_000 });
    expect(c.agent.proxy).toEqual({ enable: true, bridgeDeviceName: "edgemesh0", bridgeDeviceIP: "169.254.96.16", podSources: { interfaces: ["cni0", "docker0"], cidrs: [] } });
    expect(c.agent.dns.listen).toBe("169.254.96.16:53");
    expect(c.agent.dns.clusterDomain).toBe("cluster.local");
    expect(c.agent.dns.cacheTTL).toBe(30);
    expect(c.agent.socks5).toMatchObject({ enable: false, listen: "127.0.0.1:10800", nodePorts: [22] });
    expect(new TextDecoder().decode(c.pskSecret)).toBe("test-mesh-secret-0123456789abcdef");
  });

  test("server role has its own admin default", () => {
    expect(buildConfig({ psk: "psk" }, t.dir, "", { ...opts, role: "server" }).adminListen).toBe("127.0.0.1:10557");
  });

  test("nodeName: file, then $NODE_NAME, then hostname", () => {
    expect(buildConfig({ psk: "psk", nodeName: "edge9" }, t.dir, "", { ...opts, env: { NODE_NAME: "x" } }).nodeName).toBe("edge9");
    expect(buildConfig({ psk: "psk" }, t.dir, "", { ...opts, env: { NODE_NAME: "edge7" } }).nodeName).toBe("edge7");
    expect(buildConfig({ psk: "psk" }, t.dir, "", opts).nodeName).toBe("host-a");
  });

  test("privateNetwork: true (privnet v2) by default, v1 for a mesh being upgraded, false; nothing else", () => {
    expect(buildConfig({ psk: "psk" }, t.dir, "", opts).agent.tunnel.privateNetwork).toBe(true);
    expect(buildConfig({ psk: "psk", agent: { tunnel: { privateNetwork: "v1" } } }, t.dir, "", opts).agent.tunnel.privateNetwork).toBe("v1");
    expect(buildConfig({ psk: "psk", server: { privateNetwork: false } }, t.dir, "", opts).server.privateNetwork).toBe(false);
    const bad = problems({ psk: "psk", agent: { tunnel: { privateNetwork: "v2" } } });
    expect(bad.length).toBe(1);
    expect(bad[0]).toStartWith("agent.tunnel.privateNetwork: ");
  });

  test("a psk file others can read is a warning naming the file and the fix; mode 600 is none", () => {
    const d = tempConfigDir();
    expect(buildConfig({ psk: "psk" }, d.dir, "", opts).warnings).toEqual([]);
    chmodSync(join(d.dir, "psk"), 0o644);
    const w = buildConfig({ psk: "psk" }, d.dir, "", opts).warnings;
    expect(w).toEqual([`psk: ${join(d.dir, "psk")} is readable by every user (mode 644): anyone who reads it can join the mesh; chmod 600 ${join(d.dir, "psk")}`]);
    chmodSync(join(d.dir, "psk"), 0o640);
    expect(buildConfig({ psk: "psk" }, d.dir, "", opts).warnings[0]).toContain("readable by its group (mode 640)");
  });

  test("SOCKS5 credentials: username and passwordFile together, the password read and its file's mode checked", () => {
    const d = tempConfigDir();
    const agent = (socks5: Record<string, unknown>) => ({ psk: "psk", agent: { socks5 } });
    const p = (doc: unknown) => {
      try {
        buildConfig(doc, d.dir, "", opts);
        return [];
      } catch (e) {
        return (e as ConfigError).problems;
      }
    };
    expect(p(agent({ username: "ops" }))).toEqual(["agent.socks5: username and passwordFile go together (got a username without passwordFile)"]);
    expect(p(agent({ username: "ops", passwordFile: "nope" }))[0]).toBe(`agent.socks5.passwordFile: cannot read ${join(d.dir, "nope")}: ENOENT`);
    expect(p(agent({ username: "o p", passwordFile: "pw" }))[0]).toStartWith("agent.socks5.username: expected printable ASCII without spaces");
    d.write("pw", "hunter2 \n");
    chmodSync(join(d.dir, "pw"), 0o600);
    const c = buildConfig(agent({ username: "ops", passwordFile: "pw" }), d.dir, "", opts);
    expect(new TextDecoder().decode(c.socks5Credentials!.password)).toBe("hunter2");
    expect(c.warnings).toEqual([]);
    chmodSync(join(d.dir, "pw"), 0o644);
    expect(buildConfig(agent({ username: "ops", passwordFile: "pw" }), d.dir, "", opts).warnings[0]).toStartWith(`agent.socks5.passwordFile: ${join(d.dir, "pw")} is readable by every user`);
  });

  test("DNS or SOCKS5 listening where the guard does not reach is a warning", () => {
    const d = tempConfigDir();
    const w = (agent: Record<string, unknown>) => buildConfig({ psk: "psk", agent }, d.dir, "", opts).warnings;
    expect(w({})).toEqual([]);
    expect(w({ socks5: { enable: true } })).toEqual([]);
    expect(w({ dns: { listen: "0.0.0.0:53" } })).toEqual(["agent.dns.listen: 0.0.0.0:53 is reachable by other hosts; the agent's rules keep LAN neighbours off the bridge IP (169.254.96.16) only"]);
    expect(w({ proxy: { enable: false }, socks5: { enable: true, listen: "169.254.96.16:10800" } })).toEqual([
      "agent.dns.listen: 169.254.96.16:53 is on the bridge IP, but with agent.proxy off no rule keeps LAN neighbours off it",
      "agent.socks5.listen: 169.254.96.16:10800 is on the bridge IP, but with agent.proxy off no rule keeps LAN neighbours off it",
    ]);
  });

  test("an empty file is all defaults but still needs psk", () => {
    expect(problems(null)).toEqual(["psk: required: path of the file holding the mesh secret"]);
  });
});

describe("config errors name the field path", () => {
  test("type", () => {
    expect(problems({ psk: "psk", agent: { proxy: { enable: "yes" } } })).toEqual(['agent.proxy.enable: expected boolean, got "yes"']);
    expect(problems({ psk: "psk", agent: { servers: "1.2.3.4:20004" } })).toEqual(['agent.servers: expected array, got "1.2.3.4:20004"']);
  });

  test("format", () => {
    expect(problems({ psk: "psk", agent: { dns: { listen: "abc" } } })).toEqual(['agent.dns.listen: expected host:port, got "abc"']);
    expect(problems({ psk: "psk", agent: { servers: ["ok.example:20004", "bad"] } })).toEqual(['agent.servers[1]: expected host:port, got "bad"']);
    expect(problems({ psk: "psk", agent: { proxy: { bridgeDeviceIP: "1.2.3" } } })).toEqual(['agent.proxy.bridgeDeviceIP: expected an IPv4 address, got "1.2.3"']);
    // a port here would build a broken relay address: the server's listenPort is used
    const roleServer = { ...opts, role: "server" as const };
    expect(problems({ psk: "psk", server: { advertiseAddresses: ["203.0.113.10:20004"] } }, roleServer)[0]).toMatch(/^server\.advertiseAddresses\[0\]: give the address without a port/);
    expect(problems({ psk: "psk", server: { advertiseAddresses: ["203.0.113.10", "relay.example.com", "2001:db8::1"] } }, roleServer)).toEqual([]);
  });

  test("range", () => {
    expect(problems({ psk: "psk", server: { listenPort: 0 } })).toEqual(["server.listenPort: expected >= 1, got 0"]);
    expect(problems({ psk: "psk", agent: { tunnel: { listenPort: 70000 } } })).toEqual(["agent.tunnel.listenPort: expected <= 65535, got 70000"]);
    expect(problems({ psk: "psk", server: { listenPort: 1.5 } })).toEqual(["server.listenPort: expected int, got 1.5"]);
  });

  test("enum", () => {
    expect(problems({ psk: "psk", logLevel: "verbose" })).toEqual(['logLevel: expected one of debug | info | warn | error, got "verbose"']);
  });

  test("unknown keys are errors, with a suggestion for typos", () => {
    expect(problems({ psk: "psk", agent: { dnss: {} } })).toEqual(['agent.dnss: unknown field (did you mean "dns"?)']);
    expect(problems({ psk: "psk", agent: { dns: { listne: "1.2.3.4:53" } } })).toEqual(['agent.dns.listne: unknown field (did you mean "listen"?)']);
    expect(problems({ psk: "psk", frobnicate: 1 })).toEqual(["frobnicate: unknown field"]);
    expect(
      problems({ psk: "psk", agent: { metadata: { source: "static", static: { services: [{ name: "a", clusterIP: "10.0.0.1", prots: [] }] } } } }),
    ).toEqual(['agent.metadata.static.services[0].prots: unknown field (did you mean "ports"?)']);
  });

  test("several problems are all reported", () => {
    expect(problems({ psk: "psk", logLevel: 3, server: { listenPort: -1 } })).toHaveLength(2);
  });

  test("psk file missing, unreadable, too short", () => {
    expect(problems({ psk: "/nonexistent/psk" })).toEqual(["psk: cannot read the secret file /nonexistent/psk: ENOENT"]);
    const dir = tempDir("edgemesh-psk");
    writeFileSync(join(dir, "short"), "abc\n");
    expect(problems({ psk: join(dir, "short") })[0]).toContain("is too short (3 bytes, need at least 16)");
    expect(problems({ psk: dir })[0]).toContain(`psk: cannot read the secret file ${dir}: EISDIR`);
  });

  test("a relative psk path is relative to the config file", () => {
    const c = loadConfig(t.write("rel.yaml", "psk: ./psk\n"), opts);
    expect(c.pskSecret.length).toBeGreaterThan(16);
  });

  test("invalid YAML gives file, line and column", () => {
    const p = t.write("broken.yaml", "psk: psk\nagent:\n  servers: [a\n");
    expect(() => loadConfig(p, opts)).toThrow(/broken\.yaml:\d+:\d+: invalid YAML/);
  });

  test("duplicate keys are rejected", () => {
    const p = t.write("dup.yaml", "psk: psk\nlogLevel: info\nlogLevel: debug\n");
    expect(() => loadConfig(p, opts)).toThrow(/invalid YAML/);
  });

  test("unreadable config file says why", () => {
    const p = t.write("secret.yaml", "psk: psk\n");
    chmodSync(p, 0o000);
    // root reads anything; check the message only where permissions apply
    if (process.getuid?.() !== 0) expect(() => loadConfig(p, opts)).toThrow(/permission denied/);
    expect(() => loadConfig(join(t.dir, "missing.yaml"), opts)).toThrow(`cannot read ${join(t.dir, "missing.yaml")}: no such file`);
  });
});

describe("edgemesh.yaml.example", () => {
  test("loads without error for both roles and documents every field", async () => {
    const text = await Bun.file(join(ROOT, "edgemesh.yaml.example")).text();
    const p = t.write("example.yaml", text.replace("psk: /etc/edgemesh/psk", `psk: ${join(t.dir, "psk")}`));
    const agent = loadConfig(p, opts);
    expect(agent.nodeName).toBe("edge1");
    expect(agent.agent.metadata.static.services[0]?.name).toBe("echo");
    expect(loadConfig(p, { ...opts, role: "server" }).server.listenPort).toBe(20004);
    // every leaf of the loaded config appears as a key in the example
    const keys = new Set<string>();
    const walk = (o: unknown) => {
      if (Array.isArray(o)) return o.forEach(walk);
      if (o && typeof o === "object" && !(o instanceof Uint8Array))
        for (const [k, v] of Object.entries(o)) {
          keys.add(k);
          walk(v);
        }
    };
    const { pskSecret, configPath, role, warnings, nodeNameFrom, trustPaths, ...fields } = agent;
    walk(fields);
    for (const k of keys) expect(text).toMatch(new RegExp(`\\b${k}:`));
  });
});
