// The demo as a newcomer runs it (`npm run demo`), non-interactively, and the
// Kubernetes path end to end (`--kube`: kubectl apply / delete against the
// fake apiserver while the mesh runs). Lab modes need root; every run must
// leave no namespace, no process and no /etc/netns file behind.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ensureBinary, ROOT } from "../util/run.ts";
import { tempDir } from "../util/temp.ts";

const isRoot = process.getuid?.() === 0;
const DEMO = join(ROOT, "scripts/demo.ts");

async function demo(args: string[], opts: { interruptOn?: RegExp } = {}): Promise<{ code: number; out: string; pid: number }> {
  await ensureBinary();
  // the demo keeps its logs for the reader; here they go where the tests' temporary files are removed
  const p = Bun.spawn([process.execPath, DEMO, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, TMPDIR: tempDir("edgemesh-demo-run") } });
  let out = "";
  const reader = p.stdout.getReader();
  const dec = new TextDecoder();
  const killer = setTimeout(() => p.kill("SIGKILL"), 90_000);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value);
    if (opts.interruptOn?.test(out)) {
      p.kill("SIGINT");
      opts.interruptOn = undefined;
    }
  }
  const code = await p.exited;
  clearTimeout(killer);
  out += await new Response(p.stderr).text();
  return { code, out, pid: p.pid };
}

/** what the demo's process left: namespaces (the lab names them emlab-<pid>-...) and their /etc/netns files */
function leftovers(pid: number): string[] {
  const ns = Bun.spawnSync(["ip", "netns", "list"]).stdout.toString().split("\n");
  const etc = existsSync("/etc/netns") ? readdirSync("/etc/netns").map((d) => `/etc/netns/${d}`) : [];
  return [...ns, ...etc].filter((l) => l.includes(`emlab-${pid}-`));
}

describe.skipIf(!isRoot)("the demo in the NAT lab", () => {
  test("requests by service name reach edge3 over the LAN (direct) and edge2 across NATs (relayed, then hole-punched to direct); status shows the paths; nothing is left", async () => {
    const { code, out, pid } = await demo([]);
    expect(code, out).toBe(0);
    expect(out).toContain("response in");
    expect(out).toMatch(/curl http:\/\/hello\.demo\/[^\n]*\n\s+response in \d+ ms: hello from edge3/);
    expect(out).toMatch(/curl http:\/\/world\.demo\/[^\n]*\n\s+response in \d+ ms: world from edge2/);
    expect(out).toContain("edge1 → edge3: direct");
    expect(out).toMatch(/edge1 → edge2: relayed through the server on cloud at first, then direct: hole punched through both NATs \d+ ms after/);
    // the request after the punch went direct (the RTT shows once the first ping is back)
    expect(out).toMatch(/curl http:\/\/world\.demo\/[^\n]*\n\s+response in \d+ ms: world from edge2\n\s+edge1 → edge2: direct/);
    // the status table of edge1: its peers with their paths, the services it intercepts
    expect(out).toMatch(/PEERS[\s\S]*edge2\s+direct\s[\s\S]*edge3\s+direct\s/);
    expect(out).toMatch(/demo\/hello\s+TCP\s+10\.96\.0\.10:80\s+edge3:1/);
    expect(out).toContain("everything the demo started has been removed");
    expect(leftovers(pid)).toEqual([]);
  }, 120_000);

  test("--kube: a Service + EndpointSlice applied with kubectl is reachable by name from edge1 within 2 s; deleted, the name stops resolving and the ClusterIP refuses", async () => {
    const { code, out, pid } = await demo(["--kube"]);
    expect(code, out).toBe(0);
    expect(out).toContain("service/world created");
    const world = /response in \d+ ms, ([\d.]+) s after kubectl apply: world from edge2/.exec(out);
    expect(world, out).not.toBeNull();
    expect(Number(world![1])).toBeLessThan(2);
    expect(out).toContain("getent hosts world.demo.svc.cluster.local → (not found)");
    expect(out).toMatch(/curl http:\/\/10\.96\.0\.20\/ → curl: \(7\) Failed to connect[^\n]*after \d+ ms/);
    expect(leftovers(pid)).toEqual([]);
  }, 120_000);

  test("Ctrl-C in the middle: exit 130, the lab and its processes are gone", async () => {
    const { code, out, pid } = await demo(["--kube"], { interruptOn: /every agent holds a relay reservation/ });
    expect(code, out).toBe(130);
    expect(out).toContain("interrupted");
    expect(leftovers(pid)).toEqual([]);
    const stray = Bun.spawnSync(["pgrep", "-f", "edgemesh-mesh-"]).stdout.toString().trim();
    expect(stray).toBe("");
  }, 120_000);
});

test("--loopback (what a machine without root gets): the same requests through edge1's SOCKS5 front door", async () => {
  const { code, out } = await demo(["--loopback"]);
  expect(code, out).toBe(0);
  expect(out).toMatch(/GET http:\/\/hello\.demo\/[^\n]*\n\s+response in \d+ ms: hello from edge3/);
  expect(out).toMatch(/GET http:\/\/world\.demo\/[^\n]*\n\s+response in \d+ ms: world from edge2/);
  expect(out).toMatch(/PEERS[\s\S]*edge2[\s\S]*edge3/);
}, 120_000);
