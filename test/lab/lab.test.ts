import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useLab } from "./bun-test";
import {
  ADDRESS_PLAN,
  BUN,
  Lab,
  LabCreateError,
  WaitTimeoutError,
  cleanupStaleLabs,
  isAlive,
  listNamespaces,
  makeAddressPlan,
  run,
  tool,
  waitFor,
  withLab,
  type LabProcess,
} from "./index";

const PEER_ECHO = join(import.meta.dir, "fixtures", "peer-echo.ts");
const LAB_CHILD = join(import.meta.dir, "fixtures", "lab-child.ts");
const PUNCH = join(import.meta.dir, "fixtures", "punch.ts");
const PORT = 8080;

interface Peer {
  address: string | null;
  port: number | null;
  path: string;
}

const echoes = new WeakMap<Lab, Map<string, Promise<LabProcess>>>();

/** Start (once per lab and host) the peer-echo server on PORT; tests may run alone, so each asks for what it needs. */
function ensureEcho(lab: Lab, host: string): Promise<LabProcess> {
  let byHost = echoes.get(lab);
  if (!byHost) echoes.set(lab, (byHost = new Map()));
  let p = byHost.get(host);
  if (!p) {
    const proc = lab.spawn(host, [BUN, PEER_ECHO, "0.0.0.0", String(PORT)]);
    p = proc.waitForOutput(/listening/, { timeoutMs: 10_000 }).then(() => proc);
    byHost.set(host, p);
  }
  return p;
}



async function ours(prefix: string): Promise<string[]> {
  return (await listNamespaces()).filter((n) => n.startsWith(`${prefix}-`));
}

describe("NAT lab topology", () => {
  const lab = useLab();

  test("address plan and namespaces are as documented", async () => {
    const { hosts } = lab();
    expect(hosts.cloud.ip).toBe(ADDRESS_PLAN.cloud);
    expect(hosts.nat1.wanIp).toBe("192.0.2.11");
    expect(hosts.nat1.lanIp).toBe("10.10.1.1");
    expect(hosts.edge1.gateway).toBe(hosts.nat1.lanIp);
    expect(hosts.edge2.publicIp).toBe(hosts.nat2.wanIp);
    const present = new Set(await listNamespaces());
    for (const ns of lab().namespaces) expect(present.has(ns)).toBe(true);
    expect(lab().namespaces.length).toBe(9); // 6 hosts + wan, lan1, lan2
  });

  test("every namespace has lo up; NATs forward, others do not", async () => {
    const l = lab();
    for (const ns of l.namespaces) {
      const r = await run([tool("ip"), "-n", ns, "-o", "link", "show", "lo"]);
      expect(r.stdout).toMatch(/<[^>]*\bUP\b/);
    }
    for (const h of ["nat1", "nat2", "edge1", "cloud"] as const) {
      const r = await l.execOrThrow(h, ["cat", "/proc/sys/net/ipv4/ip_forward"]);
      expect(r.stdout.trim()).toBe(h.startsWith("nat") ? "1" : "0");
    }
  });

  test("edge1 reaches edge3 directly over LAN1, with its own LAN source address", async () => {
    const l = lab();
    const ping = await l.exec("edge1", ["ping", "-c", "1", "-W", "2", l.hosts.edge3.ip]);
    expect(ping.code).toBe(0);
    await ensureEcho(l, "edge3");
    const seen = await l.fetchStatus<Peer>("edge1", `${l.hosts.edge3.ip}:${PORT}`, { path: "/" });
    expect(seen.address).toBe(l.hosts.edge1.ip);
  });

  test("edge1 reaches cloud; cloud sees nat1's WAN address and the preserved source port", async () => {
    const l = lab();
    await ensureEcho(l, "cloud");
    const seen = await l.fetchStatus<Peer>("edge1", `${l.hosts.cloud.ip}:${PORT}`);
    expect(seen).toMatchObject({ address: l.hosts.nat1.wanIp, path: "/status" });
    // No --random on MASQUERADE: a free source port survives NAT (hole punching depends on it).
    const res = await l.httpGet("edge1", `http://${l.hosts.cloud.ip}:${PORT}/`, { curlArgs: ["--local-port", "40123"] });
    expect(JSON.parse(res.body)).toMatchObject({ address: l.hosts.nat1.wanIp, port: 40123 });
    const fromEdge2 = await l.fetchStatus<Peer>("edge2", `${l.hosts.cloud.ip}:${PORT}`);
    expect(fromEdge2.address).toBe(l.hosts.nat2.wanIp);
  });

  test("edge1 cannot reach edge2's LAN address at all", async () => {
    const l = lab();
    await ensureEcho(l, "edge2");
    // Positive control: the server is up on edge2's LAN address.
    expect((await l.fetchStatus<Peer>("edge2", `${l.hosts.edge2.ip}:${PORT}`)).address).toBe(l.hosts.edge2.ip);
    const ping = await l.exec("edge1", ["ping", "-c", "1", "-W", "1", l.hosts.edge2.ip]);
    expect(ping.code).not.toBe(0);
    const t0 = performance.now();
    await expect(l.httpGet("edge1", `http://${l.hosts.edge2.ip}:${PORT}/`, { timeoutMs: 3000 })).rejects.toThrow();
    // nat1 has no route to LAN2 and says so (ICMP unreachable): fails fast, no timeout.
    expect(performance.now() - t0).toBeLessThan(2500);
  });

  test("cloud cannot open a connection to edge2 (unsolicited inbound is dropped)", async () => {
    const l = lab();
    await Promise.all([ensureEcho(l, "cloud"), ensureEcho(l, "edge2")]);
    // An outbound flow from edge2 to cloud must not open anything inbound.
    await l.fetchStatus("edge2", `${l.hosts.cloud.ip}:${PORT}`);
    // Via nat2's WAN address: silently dropped, so curl's connect times out (exit 28), not refused (7).
    const viaWan = await l.exec("cloud", ["curl", "-sS", "--connect-timeout", "0.7", `http://${l.hosts.nat2.wanIp}:${PORT}/`]);
    expect(viaWan.code).toBe(28);
    // The LAN address is not routable from the WAN at all.
    const direct = await l.exec("cloud", ["curl", "-sS", "--connect-timeout", "0.7", `http://${l.hosts.edge2.ip}:${PORT}/`]);
    expect(direct.code).not.toBe(0);
    // But NATs answer pings on their WAN side, so the WAN itself is up.
    expect((await l.exec("cloud", ["ping", "-c", "1", "-W", "2", l.hosts.nat2.wanIp])).code).toBe(0);
  });

  test("hole punching through both NATs works (UDP, and TCP simultaneous open)", async () => {
    const l = lab();
    const { nat1, nat2 } = l.hosts;
    for (const [proto, p1, p2] of [["udp", 5000, 6000], ["tcp", 5100, 6100]] as const) {
      const a = l.spawn("edge1", [BUN, PUNCH, proto, String(p1), nat2.wanIp, String(p2)]);
      const b = l.spawn("edge2", [BUN, PUNCH, proto, String(p2), nat1.wanIp, String(p1)]);
      await Promise.all([a.exited, b.exited]);
      // Each side sees the other's NAT WAN address with the port preserved.
      expect(`${proto} ${a.output().trim()}`).toBe(`${proto} connected ${nat2.wanIp}:${p2}`);
      expect(`${proto} ${b.output().trim()}`).toBe(`${proto} connected ${nat1.wanIp}:${p1}`);
    }
  }, 15_000);

  test("addHost puts a new host behind a NAT", async () => {
    const l = lab();
    const edge4 = await l.addHost("edge4", "lan2");
    expect(edge4.ip).toBe(`${ADDRESS_PLAN.lan2.base}${ADDRESS_PLAN.firstDynamic}`);
    expect(l.host("edge4")).toBe(edge4);
    expect((await l.exec("edge4", ["ping", "-c", "1", "-W", "2", l.hosts.edge2.ip])).code).toBe(0);
    const seen = await waitFor(() => l.fetchStatus<Peer>("edge4", `${l.hosts.cloud.ip}:${PORT}`), { timeoutMs: 5000 });
    expect(seen.address).toBe(l.hosts.nat2.wanIp);
    await expect(l.addHost("edge4", "lan1")).rejects.toThrow(/already exists/);
    await expect(l.addHost("bad-name", "lan1")).rejects.toThrow(/host name/);
  });

  test("spawned processes expose pid, output and exit status", async () => {
    const l = lab();
    const dir = mkdtempSync(join(tmpdir(), "emlab-test-"));
    try {
      const logFile = join(dir, "p.log");
      const p = l.spawn("edge1", ["sh", "-c", "echo out; echo err >&2; exit 3"], { logFile });
      expect(p.pid).toBeGreaterThan(0);
      const st = await p.exited;
      expect(st).toEqual({ code: 3, signal: null });
      expect(p.output("stdout")).toBe("out\n");
      expect(p.output("stderr")).toBe("err\n");
      await waitFor(() => readFileSync(logFile, "utf8").length === 8, { timeoutMs: 2000, description: "log flushed" });
      await expect(p.waitForOutput(/never/, { timeoutMs: 200 })).rejects.toThrow(/exited/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // Ring buffer keeps only the tail.
    const chatty = l.spawn("edge1", ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done"], { ringChars: 100 });
    await chatty.exited;
    expect(chatty.output().length).toBeLessThanOrEqual(100);
    expect(chatty.output()).toEndWith("line1999\n");
    const r = await l.exec("edge1", ["sleep", "5"], { timeoutMs: 100 });
    expect(r.timedOut).toBe(true);
  });
});

describe("NAT lab lifecycle", () => {
  test("create + destroy is fast, leaves nothing behind, kills every process", async () => {
    const rootBefore = await snapshotRoot();
    const t0 = performance.now();
    const lab = await Lab.create({ killGraceMs: 500 });
    const createMs = performance.now() - t0;
    expect(await ours(lab.prefix)).toHaveLength(9);
    const direct = lab.spawn("cloud", ["sleep", "300"]);
    // A grandchild the lab never saw: must still die (found via `ip netns pids`).
    const shell = lab.spawn("edge2", ["sh", "-c", "sleep 300 & echo $!; wait"]);
    const grandchild = Number((await shell.waitForOutput(/^(\d+)$/m))[1]);
    const stubborn = lab.spawn("edge1", ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]);
    await stubborn.waitForOutput("ready");
    expect(await snapshotRoot()).toEqual(rootBefore);

    const t1 = performance.now();
    await Promise.all([lab.destroy(), lab.destroy()]);
    const destroyMs = performance.now() - t1;
    await lab.destroy(); // idempotent
    console.log(`lab create ${createMs.toFixed(0)} ms, destroy ${destroyMs.toFixed(0)} ms (incl. ${500} ms SIGTERM grace), steps ${JSON.stringify(lab.timings)}`);

    expect(await ours(lab.prefix)).toEqual([]);
    expect(lab.leftovers).toEqual([]);
    for (const pid of [direct.pid, grandchild, stubborn.pid]) expect(isAlive(pid)).toBe(false);
    expect((await stubborn.exited).signal).toBe("SIGKILL");
    expect(await snapshotRoot()).toEqual(rootBefore);
    expect(() => lab.spawn("cloud", ["true"])).toThrow(/destroyed/);
    expect(createMs).toBeLessThan(2000);
    expect(destroyMs).toBeLessThan(3000);
  }, 20_000);

  test("an error in the middle of creation still removes everything", async () => {
    let prefix = "";
    const err = await Lab.create({
      onStep: (step, info) => {
        prefix = info.prefix;
        if (step === "links") throw new Error("injected failure");
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabCreateError);
    expect((err as LabCreateError).step).toBe("links");
    expect((err as Error).message).toContain("injected failure");
    expect(prefix).not.toBe("");
    expect(await ours(prefix)).toEqual([]);
  });

  test("a failing system command during creation is reported and cleaned up", async () => {
    let prefix = "";
    const err = await Lab.create({
      onStep: async (step, info) => {
        prefix = info.prefix;
        // Sabotage: occupy the name of a veth the next step will create.
        if (step === "links") await run([tool("ip"), "-n", `${info.prefix}-wan`, "link", "add", "v-cloud", "type", "bridge"]);
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabCreateError);
    expect((err as Error).message).toMatch(/exists/i);
    expect(await ours(prefix)).toEqual([]);
  });

  test("two labs in one process do not collide", async () => {
    const [a, b] = await Promise.all([Lab.create({ name: "a" }), Lab.create({ name: "b" })]);
    try {
      expect(a.prefix).not.toBe(b.prefix);
      expect((await a.exec("edge1", ["ping", "-c", "1", "-W", "2", a.hosts.cloud.ip])).code).toBe(0);
      expect((await b.exec("edge1", ["ping", "-c", "1", "-W", "2", b.hosts.cloud.ip])).code).toBe(0);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
    expect([...(await ours(a.prefix)), ...(await ours(b.prefix))]).toEqual([]);
  });

  test("the WAN subnet is configurable", async () => {
    await withLab(
      async (lab) => {
        expect(lab.hosts.nat2.wanIp).toBe("198.51.100.12");
        const seen = await lab.exec("cloud", ["ping", "-c", "1", "-W", "2", lab.hosts.nat1.wanIp]);
        expect(seen.code).toBe(0);
      },
      { wanSubnet: "198.51.100.0/24" },
    );
    expect(() => makeAddressPlan("10.0.0.0/16")).toThrow(/a\.b\.c\.0\/24/);
  });

  test("withLab destroys even when the body throws", async () => {
    let prefix = "";
    await expect(
      withLab((lab) => {
        prefix = lab.prefix;
        throw new Error("body failed");
      }),
    ).rejects.toThrow("body failed");
    expect(await ours(prefix)).toEqual([]);
  });

  test("SIGTERM to a process holding a lab tears the lab down", async () => {
    const child = Bun.spawn([BUN, LAB_CHILD], { stdout: "pipe", stderr: "pipe" });
    const info = await readChildInfo(child);
    expect(await ours(info.prefix)).toHaveLength(9);
    child.kill("SIGTERM");
    await child.exited;
    expect(child.signalCode).toBe("SIGTERM"); // handler re-raises, so the exit still reads as a signal
    expect(await ours(info.prefix)).toEqual([]);
    expect(isAlive(info.sleeperPid)).toBe(false);
  }, 20_000);

  test("a SIGKILLed run's namespaces are swept as stale; live runs are left alone", async () => {
    const child = Bun.spawn([BUN, LAB_CHILD], { stdout: "pipe", stderr: "pipe" });
    const info = await readChildInfo(child);
    // While the owner lives, the sweep must not touch its lab.
    await cleanupStaleLabs();
    expect(await ours(info.prefix)).toHaveLength(9);
    child.kill("SIGKILL");
    await child.exited;
    expect(await ours(info.prefix)).toHaveLength(9); // no handler can run on SIGKILL
    expect(isAlive(info.sleeperPid)).toBe(true); // orphan still inside the lab
    const removed = await cleanupStaleLabs();
    expect(removed.sort()).toEqual([...info.namespaces].sort());
    expect(await ours(info.prefix)).toEqual([]);
    await waitFor(() => !isAlive(info.sleeperPid), { timeoutMs: 2000, description: "orphan killed" });
  }, 20_000);

  test("the sweep respects pid reuse: a live pid with a different start time is stale", async () => {
    const fake = `emlab-1-zzzz-0-x`; // pid 1 is alive but did not start at 'zzzz'
    await run([tool("ip"), "netns", "add", fake]);
    try {
      expect(await cleanupStaleLabs()).toContain(fake);
    } finally {
      await run([tool("ip"), "netns", "del", fake]);
    }
    expect(await listNamespaces()).not.toContain(fake);
  });
});

describe("waitFor", () => {
  test("returns the first truthy value", async () => {
    let n = 0;
    expect(await waitFor(() => (++n >= 3 ? { n } : null), { intervalMs: 5 })).toEqual({ n: 3 });
  });

  test("is bounded in time and reports the last error", async () => {
    const t0 = performance.now();
    const err = await waitFor(
      () => {
        throw new Error("not yet");
      },
      { timeoutMs: 150, intervalMs: 20, description: "the impossible" },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect((err as Error).message).toMatch(/the impossible.*not yet/);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a hanging predicate cannot overrun the deadline", async () => {
    const t0 = performance.now();
    await expect(waitFor(() => new Promise<boolean>(() => {}), { timeoutMs: 100 })).rejects.toThrow(WaitTimeoutError);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

async function readChildInfo(child: Bun.Subprocess<"ignore", "pipe", "pipe">): Promise<{ prefix: string; namespaces: string[]; sleeperPid: number }> {
  const reader = child.stdout.getReader();
  let buf = "";
  const deadline = Date.now() + 15_000;
  while (!buf.includes("\n") && Date.now() < deadline) {
    const { value, done } = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now())).then(() => ({ value: undefined, done: true }))]);
    if (done) break;
    buf += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  if (!buf.includes("\n")) {
    child.kill("SIGKILL");
    throw new Error(`lab child did not report: ${buf}${await new Response(child.stderr).text()}`);
  }
  return JSON.parse(buf.split("\n")[0]!);
}

/** Root-namespace state the lab must never change. */
async function snapshotRoot(): Promise<{ links: string[]; routes: string; rules: string }> {
  const links = (await run([tool("ip"), "-o", "link", "show"])).stdout
    .split("\n")
    .map((l) => l.split(":")[1]?.trim() ?? "")
    .filter(Boolean)
    .sort();
  const routes = (await run([tool("ip"), "route", "show", "table", "all"])).stdout;
  const rules = (await run([tool("iptables"), "-S"])).stdout + readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
  return { links, routes, rules };
}
