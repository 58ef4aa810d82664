// The compiled binary as an operator runs it: from a directory without
// node_modules, with its admin endpoint, and stopped by SIGTERM.
import { beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { edgemesh, ensureBinary, freePort, tempConfigDir, until } from "./util/run.ts";
import { tempDir } from "./util/temp.ts";

let binary = "";
// no Kubernetes, no tunnel servers, nothing on the system touched
const staticAgent = () =>
  `agent:\n  metadata: {source: static}\n  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {enable: false}\n`;
let isolated = "";

beforeAll(async () => {
  const built = await ensureBinary();
  // a directory with nothing but the binary: it must not need node_modules
  isolated = tempDir("edgemesh-bin");
  binary = join(isolated, "edgemesh");
  copyFileSync(built, binary);
  Bun.spawnSync(["chmod", "+x", binary]);
});

function startAgent(extra = "", level = "info", env?: Record<string, string>) {
  const t = tempConfigDir();
  const port = freePort();
  const cfg = t.write("agent.yaml", `nodeName: edge1\n${t.trust("edge1")}\npsk: psk\nlogLevel: ${level}\nadminListen: 127.0.0.1:${port}\n${extra || staticAgent()}`);
  const proc = Bun.spawn([binary, "agent", "--config", cfg], { cwd: isolated, stdout: "pipe", stderr: "pipe", env });
  const stderr = new Response(proc.stderr).text();
  return { proc, port, stderr, admin: `127.0.0.1:${port}` };
}

describe("compiled binary", () => {
  test("runs --help and version with no node_modules around", async () => {
    const help = await edgemesh(["--help"], { binary, cwd: isolated });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("edgemesh agent --config FILE");
    const v = await edgemesh(["version"], { binary, cwd: isolated });
    expect(v.code).toBe(0);
    // release builds embed package version + git hash, not the dev marker
    expect(v.stdout).toMatch(/^edgemesh \d+\.\d+\.\d+\+[0-9a-z-]+\n$/);
    const bad = await edgemesh(["nope"], { binary, cwd: isolated });
    expect(bad.code).toBe(2);
  });

  test("agent serves /healthz, /readyz, /status, /metrics and stops on SIGTERM", async () => {
    const a = startAgent();
    try {
      const health = await until(async () => {
        const r = await fetch(`http://${a.admin}/healthz`).catch(() => undefined);
        return r?.ok ? r : undefined;
      });
      expect(await health.text()).toBe("ok\n");
      const ready = await fetch(`http://${a.admin}/readyz`);
      expect(ready.status).toBe(200);

      const status = (await (await fetch(`http://${a.admin}/status`)).json()) as { modules: unknown[] };
      expect(status).toMatchObject({ role: "agent", nodeName: "edge1", servers: [], peers: [], services: 0, listeners: [], ready: true });
      expect(status.modules).toContainEqual({ name: "admin", state: "running", ready: true });
      expect(status.modules).toContainEqual({ name: "controller", state: "running", ready: true });
      expect(status.modules).toContainEqual({ name: "tunnel", state: "running", ready: true });

      const metrics = await (await fetch(`http://${a.admin}/metrics`)).text();
      expect(metrics).toMatch(/^edgemesh_process_uptime_seconds \d+(\.\d+)?$/m);
      expect(metrics).toMatch(/^edgemesh_process_resident_memory_bytes \d+$/m);
      expect(metrics).toContain('edgemesh_module_up{module="admin",state="running"} 1');
      expect(metrics).toContain("# TYPE edgemesh_module_ready gauge");

      const table = await edgemesh(["status", "--admin", a.admin], { binary, cwd: isolated });
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/^role\s+agent$/m);
      expect(table.stdout).toMatch(/^node\s+edge1$/m);
      expect(table.stdout).toContain("MODULES");
      const json = await edgemesh(["status", "--admin", a.admin, "--json"], { binary, cwd: isolated });
      expect(JSON.parse(json.stdout).nodeName).toBe("edge1");

      a.proc.kill("SIGTERM");
      const code = await Promise.race([a.proc.exited, Bun.sleep(12_000).then(() => "timeout")]);
      expect(code).toBe(0);
      const log = await a.stderr;
      expect(log).toMatch(/^\S+Z INFO  \[main\] edgemesh agent starting /m);
      expect(log).toContain("[runner] stopping reason=SIGTERM");
      expect(await fetch(`http://${a.admin}/healthz`).catch(() => "down")).toBe("down");
    } finally {
      a.proc.kill("SIGKILL");
    }
  });

  test("/readyz says not ready, and why, while the apiserver cannot be reached", async () => {
    const api = freePort(); // nothing listens there
    const a = startAgent(`agent:\n  metadata: {kubernetes: {server: "http://127.0.0.1:${api}"}}\n  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {enable: false}\n`);
    try {
      const r = await until(async () => {
        const res = await fetch(`http://${a.admin}/readyz`).catch(() => undefined);
        return res ? res : undefined;
      });
      expect(r.status).toBe(503);
      expect(await r.text()).toBe("not ready: controller\n");
      expect((await fetch(`http://${a.admin}/healthz`)).status).toBe(200);
    } finally {
      a.proc.kill("SIGTERM");
      await a.proc.exited;
    }
  });

  test("the agent runs with the allocator's purge delay set (same PID, same arguments), and keeps an operator's own", async () => {
    const environ = (pid: number) => Object.fromEntries(readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
    const { MIMALLOC_PURGE_DELAY: _, ...base } = process.env as Record<string, string>;
    const unicode = "café ünïcode ✓";
    for (const [env, want] of [[{ ...base, EDGEMESH_TEST_VALUE: unicode }, "1000"], [{ ...base, MIMALLOC_PURGE_DELAY: "40" }, "40"]] as const) {
      const a = startAgent("", "info", env);
      try {
        await until(async () => ((await fetch(`http://${a.admin}/healthz`).catch(() => undefined))?.ok ? true : undefined));
        expect(environ(a.proc.pid).MIMALLOC_PURGE_DELAY).toBe(want);
        if ("EDGEMESH_TEST_VALUE" in env) expect(environ(a.proc.pid).EDGEMESH_TEST_VALUE).toBe(unicode); // the rest of the environment intact
        expect(readFileSync(`/proc/${a.proc.pid}/cmdline`, "latin1").split("\0").slice(1, 3)).toEqual(["agent", "--config"]);
      } finally {
        a.proc.kill("SIGTERM");
        await a.proc.exited;
      }
    }
  });

  test("logLevel is honoured", async () => {
    const a = startAgent("", "warn");
    try {
      await until(async () => ((await fetch(`http://${a.admin}/healthz`).catch(() => undefined))?.ok ? true : undefined));
      a.proc.kill("SIGTERM");
      await a.proc.exited;
      expect(await a.stderr).not.toContain("INFO");
    } finally {
      a.proc.kill("SIGKILL");
    }
  });

  test("an admin port already in use is a clear error, exit 1", async () => {
    const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const t = tempConfigDir();
      const cfg = t.write("agent.yaml", `nodeName: edge1\n${t.trust("edge1")}\npsk: psk\nadminListen: 127.0.0.1:${busy.port}\n`);
      const r = await edgemesh(["agent", "--config", cfg], { binary, cwd: isolated });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`adminListen: cannot listen on 127.0.0.1:${busy.port}: EADDRINUSE`);
    } finally {
      busy.stop(true);
    }
  });
});
