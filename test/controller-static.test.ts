// The static metadata source in the running binary: edits to the config file
// (or SIGHUP) reload the services; a bad edit keeps the old ones.
import { beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { ensureBinary, freePort, tempConfigDir, until } from "./util/run.ts";

let binary = "";
beforeAll(async () => {
  binary = await ensureBinary();
});

let trust = "";
function config(admin: number, tunnel: number, services: string[]): string {
  return [
    "nodeName: edge1",
    trust,
    "psk: psk",
    `adminListen: 127.0.0.1:${admin}`,
    "agent:",
    `  tunnel: {listenPort: ${tunnel}, listenAddresses: [127.0.0.1]}`,
    "  proxy: {enable: false}",
    "  dns: {enable: false}",
    "  metadata:",
    "    source: static",
    "    static:",
    "      nodes: [{name: edge2, addresses: [10.10.2.12]}]",
    services.length ? "      services:" : "      services: []",
    ...services.map((n, i) => `        - {name: ${n}, namespace: demo, clusterIP: 10.96.0.${i + 10}, ports: [{port: 80}], endpoints: [{ip: 10.0.0.${i + 1}, nodeName: edge2}]}`),
    "",
  ].join("\n");
}

test("edit → reload; bad edit → old state kept and the reason logged; SIGHUP → reload", async () => {
  const t = tempConfigDir();
  trust = t.trust("edge1");
  const admin = freePort();
  const tunnel = freePort();
  const path = t.write("agent.yaml", config(admin, tunnel, ["a"]));
  const proc = Bun.spawn([binary, "agent", "--config", path], { stdout: "pipe", stderr: "pipe" });
  const stderr = new Response(proc.stderr).text();
  const count = async () => ((await (await fetch(`http://127.0.0.1:${admin}/status`)).json()) as { services: number }).services;
  try {
    expect(await until(async () => ((await count().catch(() => -1)) === 1 ? true : undefined))).toBe(true);
    writeFileSync(path, config(admin, tunnel, ["a", "b", "c"]));
    await until(async () => ((await count()) === 3 ? true : undefined), 5000);

    writeFileSync(path, config(admin, tunnel, ["a"]).replace("clusterIP: 10.96.0.10", "clusterIP: not-an-ip"));
    await Bun.sleep(800);
    expect(await count()).toBe(3);
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    expect(metrics).toContain('edgemesh_config_reloads_total{result="failed"} 1');

    // fix the file without a watch event reaching us in time: SIGHUP reloads too
    writeFileSync(path, config(admin, tunnel, ["a", "b"]));
    proc.kill("SIGHUP");
    await until(async () => ((await count()) === 2 ? true : undefined), 5000);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  const log = await stderr;
  expect(log).toContain("config reload failed, keeping the previous services");
  expect(log).toContain('agent.metadata.static.services[0].clusterIP: expected an IPv4 or IPv6 address, strictly written, got \\"not-an-ip\\"');
});
