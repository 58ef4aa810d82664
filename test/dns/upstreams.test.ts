// Where forwarded names go: the configured upstreams, else resolv.conf's
// nameservers at start, never ourselves.
import { describe, expect, test } from "bun:test";
import { chooseUpstreams, resolvConfNameservers } from "../../src/agent/dns/upstreams.ts";
import { buildConfig, ConfigError } from "../../src/config/load.ts";
import { tempConfigDir } from "../util/run.ts";

const listen = { host: "169.254.96.16", port: 53 };
const resolvConf = `# written by hand
search demo.svc.cluster.local svc.cluster.local
nameserver 169.254.96.16
nameserver 10.0.0.2
nameserver fe80::1%eth0
nameserver not-an-ip
options ndots:5
nameserver 10.0.0.2
`;

describe("upstream resolvers", () => {
  test("from resolv.conf: its nameservers in order, without ourselves or duplicates", () => {
    expect(resolvConfNameservers(resolvConf)).toEqual(["169.254.96.16", "10.0.0.2", "fe80::1", "10.0.0.2"]);
    const c = chooseUpstreams([], resolvConf, listen);
    expect(c).toEqual({ source: "resolv.conf", skipped: ["169.254.96.16"], upstreams: [{ host: "10.0.0.2", port: 53 }, { host: "fe80::1", port: 53 }] });
    // the same IP on another port is someone else
    expect(chooseUpstreams([], "nameserver 127.0.0.1\n", { host: "127.0.0.1", port: 5353 }).upstreams).toEqual([{ host: "127.0.0.1", port: 53 }]);
    expect(chooseUpstreams([], undefined, listen).upstreams).toEqual([]);
  });

  test("configured upstreams win over resolv.conf, with or without a port", () => {
    const c = chooseUpstreams(["10.1.1.1", "10.1.1.2:5353", "[fd00::53]:53", "169.254.96.16:53"], resolvConf, listen);
    expect(c.source).toBe("config");
    expect(c.upstreams).toEqual([{ host: "10.1.1.1", port: 53 }, { host: "10.1.1.2", port: 5353 }, { host: "fd00::53", port: 53 }]);
    expect(c.skipped).toEqual(["169.254.96.16:53"]);
  });

  test("config accepts only IPs (a name would need DNS to reach DNS), and cacheSize", () => {
    const t = tempConfigDir();
    const load = (dns: unknown) => buildConfig({ psk: "psk", agent: { dns } }, t.dir, "", { role: "agent", env: {}, hostname: () => "n" });
    expect(load({ upstreamServers: ["10.0.0.1", "10.0.0.1:5353", "[fd00::1]:53"], cacheSize: 5 }).agent.dns).toMatchObject({ cacheSize: 5, upstreamServers: ["10.0.0.1", "10.0.0.1:5353", "[fd00::1]:53"] });
    expect(load({}).agent.dns.cacheSize).toBe(10_000);
    try {
      load({ upstreamServers: ["dns.example.org:53"] });
      throw new Error("accepted a host name");
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).problems[0]).toContain("agent.dns.upstreamServers[0]: expected an IP address or IP:port");
    }
  });
});
