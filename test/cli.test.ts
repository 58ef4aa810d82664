import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "bun:test";
import { edgemesh, tempConfigDir } from "./util/run.ts";

describe("edgemesh CLI", () => {
  test("--help and -h print usage on stdout, exit 0", async () => {
    for (const flag of ["--help", "-h", "help"]) {
      const r = await edgemesh([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("edgemesh agent --config FILE");
      expect(r.stdout).toContain("edgemesh server");
      expect(r.stdout).toContain("edgemesh status");
    }
  });

  test("per-subcommand --help", async () => {
    const cases: Record<string, string> = {
      server: "Usage: edgemesh server",
      agent: "Usage: edgemesh agent --config FILE",
      status: "--json",
      version: "Usage: edgemesh version",
      psk: "mode 600",
    };
    for (const [cmd, text] of Object.entries(cases)) {
      const r = await edgemesh([cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(text);
    }
  });

  test("no command, unknown command, unknown flag: usage on stderr, exit 2", async () => {
    const none = await edgemesh([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("Usage:");
    const unknown = await edgemesh(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stdout).toBe("");
    const flag = await edgemesh(["agent", "--confg", "x.yaml"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("unknown flag --confg");
    expect(flag.stderr).toContain("Usage: edgemesh agent");
    const top = await edgemesh(["--verbose"]);
    expect(top.code).toBe(2);
    const stray = await edgemesh(["status", "extra"]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('unexpected argument "extra"');
    const novalue = await edgemesh(["status", "--admin"]);
    expect(novalue.code).toBe(2);
    expect(novalue.stderr).toContain("--admin needs a value");
  });

  test("agent without --config is a usage error", async () => {
    const r = await edgemesh(["agent"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("agent needs --config FILE");
  });

  test("version prints the package version", async () => {
    const r = await edgemesh(["version"]);
    expect(r.code).toBe(0);
    const pkg = await Bun.file(new URL("../package.json", import.meta.url)).json();
    expect(r.stdout).toStartWith(`edgemesh ${pkg.version}`);
  });

  test("psk prints a fresh 32-byte base64 secret", async () => {
    const a = await edgemesh(["psk"]);
    const b = await edgemesh(["psk"]);
    expect(a.code).toBe(0);
    expect(Buffer.from(a.stdout.trim(), "base64").length).toBe(32);
    expect(a.stdout).not.toBe(b.stdout);
  });

  test("psk --out writes the secret with mode 600 and never replaces an existing file", async () => {
    const t = tempConfigDir();
    const out = join(t.dir, "new-psk");
    const r = await edgemesh(["psk", "--out", out]);
    expect(r.code).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const secret = readFileSync(out, "utf8");
    expect(Buffer.from(secret.trim(), "base64").length).toBe(32);
    const again = await edgemesh(["psk", "--out", out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("exists");
    expect(readFileSync(out, "utf8")).toBe(secret);
  });

  test("a bad config exits 1 naming the field, before starting anything", async () => {
    const t = tempConfigDir();
    const cfg = t.write("bad.yaml", "psk: psk\nadminListen: 127.0.0.1:1\nagent:\n  dns:\n    listen: abc\n");
    const r = await edgemesh(["agent", "--config", cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('agent.dns.listen: expected host:port, got "abc"');
    expect(r.stderr).not.toContain("starting");
  });

  test("a missing config file says which path and why", async () => {
    const r = await edgemesh(["server", "--config", "/nonexistent/edgemesh.yaml"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot read /nonexistent/edgemesh.yaml: no such file");
  });

  test("status with nothing listening says so clearly, exit 1", async () => {
    const r = await edgemesh(["status", "--admin", "127.0.0.1:1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("127.0.0.1:1: connection refused");
    expect(r.stderr).toContain("--admin HOST:PORT");
  });
});
