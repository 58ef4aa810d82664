// Finding 2 of the hardening review: a LAN neighbour that routes the bridge
// IP and the service range via an edge node must get nothing from its agent
// (no DNS answer, no ClusterIP service, no SOCKS5), while the node's own
// processes and its pods (behind a `cni0` bridge interface) are served. The
// compiled agent with its real filter rules, in lab namespaces; the pod is a
// namespace the test creates and removes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { ensureBinary, tempConfigDir } from "./util/run.ts";

let lab: Lab | undefined;
let pod = "";
beforeAll(async () => {
  lab = await Lab.create({ name: "exposure" });
  pod = `${lab.prefix}-pod`;
});
afterAll(async () => {
  if (pod) Bun.spawnSync(["ip", "netns", "del", pod], { stderr: "ignore" });
  await lab?.destroy();
});

const BRIDGE = "169.254.96.16";
const CLUSTER_IP = "10.96.0.20";
const NAME = "web.demo.svc.cluster.local";

/** the three things the agent offers, asked from inside a namespace */
async function ask(run: (argv: string[]) => Promise<{ code: number | null; stdout: string }>) {
  const http = await run(["curl", "-sS", "--max-time", "2", `http://${CLUSTER_IP}/`]);
  const dns = await run(["dig", "+time=1", "+tries=1", "+short", `@${BRIDGE}`, NAME]);
  // a SOCKS5 greeting (version 5, one method: none) is answered 05 00
  const socks = await run(["timeout", "3", "bash", "-c", `exec 3<>/dev/tcp/${BRIDGE}/10800 && printf '\\005\\001\\000' >&3 && head -c 2 <&3 | od -An -tx1`]);
  return { http: http.code === 0 ? http.stdout.trim() : "", dns: dns.code === 0 ? dns.stdout.trim() : "", socks: socks.stdout.trim() };
}

test("the agent serves this host and its pods; a LAN neighbour routing to it gets no DNS, no service, no SOCKS5", async () => {
  const l = lab!;
  const binary = await ensureBinary();
  const edge1 = l.hosts.edge1;
  const edge1Ns = edge1.ns;
  // the pod: a namespace behind edge1's `cni0`
  const sh = async (argv: string[]) => {
    const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`${argv.join(" ")}: ${stderr}`);
    return stdout;
  };
  await sh(["ip", "netns", "add", pod]);
  await sh(["ip", "link", "add", "cni0", "netns", edge1Ns, "type", "veth", "peer", "name", "eth0", "netns", pod]);
  await sh(["ip", "-n", edge1Ns, "addr", "add", "10.244.1.1/24", "dev", "cni0"]);
  await sh(["ip", "-n", edge1Ns, "link", "set", "cni0", "up"]);
  await sh(["ip", "-n", pod, "addr", "add", "10.244.1.2/24", "dev", "eth0"]);
  await sh(["ip", "-n", pod, "link", "set", "eth0", "up"]);
  await sh(["ip", "-n", pod, "link", "set", "lo", "up"]);
  await sh(["ip", "-n", pod, "route", "add", "default", "via", "10.244.1.1"]);
  // the neighbour routes the bridge IP and the service range via edge1
  await l.execOrThrow("edge3", ["ip", "route", "add", `${BRIDGE}/32`, "via", edge1.ip]);
  await l.execOrThrow("edge3", ["ip", "route", "add", "10.96.0.0/16", "via", edge1.ip]);

  const backend = l.spawn("edge1", [BUN, join(import.meta.dir, "fixtures", "http-id.ts"), "0.0.0.0", "8080", "web-backend"]);
  await backend.waitForOutput(/listening/, { timeoutMs: 15_000 });
  const t = tempConfigDir();
  const cfg = t.write(
    "agent.yaml",
    [
      "nodeName: edge1",
      t.trust("edge1"),
      "psk: psk",
      "adminListen: 127.0.0.1:10556",
      "agent:",
      "  tunnel: {listenPort: 20006}",
      "  metadata:",
      "    source: static",
      "    static:",
      "      services:",
      `        - {name: web, namespace: demo, clusterIP: ${CLUSTER_IP}, ports: [{name: http, port: 80, targetPort: 8080}], endpoints: [{ip: ${edge1.ip}, nodeName: edge1}]}`,
      "  dns: {upstreamServers: [127.0.0.1]}",
      `  socks5: {enable: true, listen: "${BRIDGE}:10800"}`,
      "",
    ].join("\n"),
  );
  const agent = l.spawn("edge1", [binary, "agent", "--config", cfg]);
  const local = (argv: string[]) => l.exec("edge1", argv, { timeoutMs: 5000 });
  const fromPod = (argv: string[]) => l.exec("edge1", ["ip", "netns", "exec", pod, ...argv], { timeoutMs: 5000 });
  const neighbour = (argv: string[]) => l.exec("edge3", argv, { timeoutMs: 5000 });
  const served = { http: "web-backend", dns: CLUSTER_IP, socks: "05 00" };
  await waitFor(async () => JSON.stringify(await ask(local)) === JSON.stringify(served), { timeoutMs: 20_000, intervalMs: 250, description: "the agent serves its own host" });
  expect(await ask(fromPod)).toEqual(served);
  expect(await ask(neighbour)).toEqual({ http: "", dns: "", socks: "" });
  // the neighbour's packets did reach edge1 and were dropped by the guard
  const guard = await l.execOrThrow("edge1", ["iptables", "-L", "EDGEMESH-INPUT", "-v", "-x", "-n"]);
  const dropped = Number(/^\s*(\d+)\s+\d+\s+DROP/m.exec(guard.stdout)?.[1] ?? 0);
  expect(dropped).toBeGreaterThan(0);
  expect(agent.running).toBe(true);
}, 60_000);
