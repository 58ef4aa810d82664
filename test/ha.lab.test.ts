// Several tunnel servers give high availability (issue 17, HA): every agent
// holds a reservation on each configured server, so when one dies (SIGKILL)
// or goes silent (its packets dropped) relayed peers stay reachable through
// the other, and a server that returns gets its reservations back. The NATs randomise ports, so the agents cannot
// punch and every request between them is relayed. (Relay agents:
// relay-agent.lab.test.ts; gateways that RST: nat-gateways.lab.test.ts.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import type { LabProcess } from "./lab/proc.ts";
import { caCommand, endLab, socksEcho, startMesh, SERVER_PORT, type Mesh } from "./lab/mesh.ts";
import { ensureBinary } from "./util/run.ts";

const FIX = join(import.meta.dir, "fixtures");
let lab: Lab;
let mesh: Mesh;
let cloud2Ip = "";
let binary = "";
let second: LabProcess | undefined;

function startSecond(): LabProcess {
  second = lab.spawn("cloud2", [binary, "server", "--config", join(mesh.dir, "server2.yaml")], { logFile: join(mesh.dir, "server2.log") });
  return second;
}

beforeAll(async () => {
  lab = await Lab.create({ name: "ha" });
  cloud2Ip = (await lab.addHost("cloud2", "wan")).ip;
  await lab.setNatMapping("nat1", "random");
  await lab.setNatMapping("nat2", "random");
  binary = await ensureBinary();
  mesh = startMesh(lab, { binary, extraServers: [`${cloud2Ip}:${SERVER_PORT}`], agents: [{ name: "edge1", host: "edge1" }, { name: "edge2", host: "edge2" }] });
  lab.spawn("edge2", [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9001", "echo"]);
  // the second server: its own certificate, the first one's config otherwise
  caCommand(binary, ["cert", "issue", "--ca", join(mesh.dir, "ca"), "--node", "cloud2", "--role", "server", "--out", join(mesh.dir, "certs")]);
  const text = readFileSync(join(mesh.dir, "server.yaml"), "utf8")
    .replaceAll("cloud.crt", "cloud2.crt")
    .replaceAll("cloud.key", "cloud2.key")
    .replace("nodeName: cloud", "nodeName: cloud2")
    .replace(/advertiseAddresses: \[[^\]]*\]/, `advertiseAddresses: [${cloud2Ip}]`);
  writeFileSync(join(mesh.dir, "server2.yaml"), text);
  startSecond();
  mesh.startServer();
  for (const n of mesh.agents.keys()) mesh.startAgent(n);
}, 60_000);

afterAll(() => endLab(lab, mesh), 30_000);

const echo = (timeoutMs = 5_000) => socksEcho(lab, "edge1", "edge2", 9001, timeoutMs);

const reservedOnBoth = () =>
  waitFor(
    async () => {
      for (const n of ["edge1", "edge2"]) {
        const st = await mesh.status<{ servers: Array<{ reservation: boolean }> }>(n);
        if (st.servers.length !== 2 || !st.servers.every((s) => s.reservation)) return false;
      }
      return true;
    },
    // a reservation attempt that libp2p leaves hanging behind another server's is retried after 12 s
    { timeoutMs: 40_000, intervalMs: 250, description: "both agents reserved on both servers" },
  );

/** ms from now until a relayed request through the mesh succeeds, bounded; each request given `perTryMs` */
async function untilServed(limitMs: number, perTryMs = 5_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < limitMs) {
    if (await echo(perTryMs)) return performance.now() - t0;
    await Bun.sleep(100);
  }
  throw new Error(`no request through the mesh succeeded within ${limitMs} ms`);
}

test("each server killed in turn: relayed requests succeed through the other within 2 s, and a returning server gets its reservations back", async () => {
  await reservedOnBoth();
  expect(await echo()).toBe(true);

  mesh.server.kill("SIGKILL");
  const first = await untilServed(10_000);
  console.log(`first server killed: next request served after ${Math.round(first)} ms`);
  expect(first).toBeLessThan(2000);

  mesh.startServer();
  await reservedOnBoth();

  second!.kill("SIGKILL");
  const other = await untilServed(10_000);
  console.log(`second server killed: next request served after ${Math.round(other)} ms`);
  expect(other).toBeLessThan(2000);
}, 120_000);

test("a server whose host goes silent (its packets dropped, no RST): agents notice within seconds and relayed requests are served through the other", async () => {
  if (!second?.running) startSecond();
  await reservedOnBoth();
  expect(await echo()).toBe(true);
  // the server that carries edge1's relayed connection to edge2 goes silent
  const via = [...mesh.logs("edge1").matchAll(/connected to peer node=edge2 path=relayed via=\/ip4\/([\d.]+)\//g)].at(-1)?.[1];
  expect(via).toBeDefined();
  const host = via === cloud2Ip ? "cloud2" : "cloud";
  const silence = async (op: "-I" | "-D") => {
    for (const chain of ["INPUT", "OUTPUT"]) await lab.execOrThrow(host, ["iptables", op, chain, "-j", "DROP"]);
  };
  await silence("-I");
  try {
    const t0 = performance.now();
    // requests that give up after 0.6 s, as a client retrying would: one caught
    // on the silent server's relay does not hide when new ones succeed
    const served = await untilServed(15_000, 600);
    console.log(`${host} silent: next request served after ${Math.round(served)} ms`);
    // a probe every 500 ms, unanswered for 1 s: the server is noticed 1-1.5 s
    // into the silence and new streams avoid it; requests are tried every
    // 0.7 s, so runs show ~1.5 s, ~2.2 s at the worst phase
    expect(served).toBeLessThan(3000);
    await waitFor(async () => !(await mesh.status<{ servers: Array<{ address: string; reservation: boolean }> }>("edge1")).servers.find((s) => s.address.startsWith(`${lab.host(host).ip}:`))?.reservation, {
      timeoutMs: 6_000,
      intervalMs: 100,
      description: "edge1 no longer counts on the silent server",
    });
    console.log(`${host} silent: edge1 stopped counting on it after ${Math.round(performance.now() - t0)} ms`);
  } finally {
    await silence("-D");
  }
  await reservedOnBoth();
}, 90_000);
