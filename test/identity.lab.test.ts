// Identity v2 across the NAT lab: every node has its own key and a
// certificate from the mesh CA. Names and roles come from certificates only.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Lab, BUN, waitFor } from "./lab/index.ts";
import { caCommand, startMesh, SOCKS, SERVER_PORT, TUNNEL_PORT, type Mesh } from "./lab/mesh.ts";
import { ensureBinary } from "./util/run.ts";

const FIX = join(import.meta.dir, "fixtures");
let lab: Lab;
let mesh: Mesh;

beforeAll(async () => {
  lab = await Lab.create({ name: "identity" });
  const h = lab.hosts;
  mesh = startMesh(lab, {
    binary: await ensureBinary(),
    certificates: true,
    agents: [
      // edge3 is an agent: listed as a server, it must not be used as one
      { name: "edge1", host: "edge1", hints: { edge3: [h.edge3.ip] }, extraServers: [`${h.edge3.ip}:${TUNNEL_PORT}`] },
      { name: "edge3", host: "edge3", hints: { edge1: [h.edge1.ip] } },
      { name: "edge2", host: "edge2" },
    ],
  });
  for (const host of ["edge2", "edge3"]) lab.spawn(host, [BUN, join(FIX, "tcp-sink.ts"), "127.0.0.1", "9001", "echo"]);
  await mesh.startAll();
}, 60_000);

afterAll(async () => {
  mesh?.dumpLogsIfAsked();
  await lab?.destroy();
}, 30_000);

async function socks(node: string, port: number): Promise<{ ok: boolean; error?: string }> {
  const r = await lab.exec("edge1", [BUN, join(FIX, "socks-client.ts"), SOCKS, node, String(port), "echo"], { timeoutMs: 30_000 });
  try {
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
  } catch {
    return { ok: false, error: `${r.stdout} ${r.stderr}` };
  }
}

const probe = async (args: string[]) => {
  const r = await lab.exec("edge1", [BUN, join(FIX, "mesh-probe.ts"), ...args], { timeoutMs: 30_000 });
  return JSON.parse(r.stdout.trim().split("\n").pop() || "{}") as Record<string, unknown>;
};
const cert = (n: string) => join(mesh.dir, "certs", `${n}.crt`);
const key = (n: string) => join(mesh.dir, "certs", `${n}.key`);

describe("identity v2: certificates", () => {
  test("agents with certificates hold reservations and reach each other by name (direct and relayed), echo checked", async () => {
    const st = await mesh.serverStatus<{ reservations: Array<{ nodeName: string }> }>();
    expect(st.reservations.map((r) => r.nodeName).sort()).toEqual(["edge1", "edge2", "edge3"]);
    expect(await socks("edge3", 9001)).toMatchObject({ ok: true });
    expect(await socks("edge2", 9001)).toMatchObject({ ok: true });
  }, 60_000);

  test("a node holding edge3's valid certificate that calls itself edge2 gets no stream as edge2; edge1 still reaches the real edge2", async () => {
    const r = await probe([
      "certimpostor",
      mesh.psk,
      join(mesh.dir, "ca", "ca.pub"),
      cert("edge3"),
      key("edge3"),
      `${lab.hosts.cloud.ip}:${SERVER_PORT}`,
      `${lab.hosts.edge1.ip}:${TUNNEL_PORT}`,
      cert("edge1"),
      "edge2",
    ]);
    expect(r.certificate).toBe("edge3");
    expect(r.serverConnectionOpen).toBe(false);
    expect(r.proxy).toBe(false);
    expect(mesh.logs("server")).toContain("peer refused: it calls itself another node than its certificate");
    expect(await socks("edge2", 9001)).toMatchObject({ ok: true });
  }, 60_000);

  test("a node whose certificate says agent is not used as a server; status shows certificates and their days left", async () => {
    type St = { servers: Array<{ address: string; reservation: boolean; error?: string }>; identity: { version: number; node: string; role: string; daysLeft: number }; peers: Array<{ nodeName: string; certificate?: { role: string; daysLeft: number } }> };
    const st = await waitFor(
      async () => {
        const s = await mesh.status<St>("edge1");
        return s.servers.find((x) => x.address.startsWith(lab.hosts.edge3.ip))?.error ? s : undefined;
      },
      { timeoutMs: 15_000, description: "edge1's attempt at edge3 as a server" },
    );
    const asServer = st.servers.find((x) => x.address.startsWith(lab.hosts.edge3.ip))!;
    expect(asServer.reservation).toBe(false);
    expect(asServer.error).toContain("is agent edge3, not a server");
    expect(st.identity).toMatchObject({ version: 2, node: "edge1", role: "agent" });
    expect(st.identity.daysLeft).toBeGreaterThan(360);
    expect(st.peers.find((p) => p.nodeName === "edge3")?.certificate).toMatchObject({ role: "agent" });
    const metrics = await lab.httpGet("edge1", "http://127.0.0.1:10556/metrics");
    expect(Number(/^edgemesh_identity_certificate_expiry_seconds (\d+)$/m.exec(metrics.body)?.[1])).toBeGreaterThan(360 * 86400);
  }, 60_000);

  test("a psk holder without a certificate gets nothing from the server", async () => {
    const r = await probe(["nocert", mesh.psk, `${lab.hosts.cloud.ip}:${SERVER_PORT}`]);
    expect(r.reservation).toBe(false);
    expect(r.serverConnectionOpen).toBe(false);
    await waitFor(() => mesh.logs("server").includes("peer refused: no valid certificate"), { timeoutMs: 5000, description: "the server logs the refusal" });
  }, 60_000);
});

describe("identity v2: revocation", () => {
  test("a revoked node is cut off everywhere within 10 s and refused afterwards; the others keep working", async () => {
    expect(await socks("edge3", 9001)).toMatchObject({ ok: true });
    const t0 = performance.now();
    caCommand(await ensureBinary(), ["ca", "revoke", "--ca", join(mesh.dir, "ca"), "--node", "edge3", "--out", join(mesh.dir, "revoked")]);
    await waitFor(
      async () => {
        const st = await mesh.serverStatus<{ reservations: Array<{ nodeName: string }> }>();
        return !st.reservations.some((r) => r.nodeName === "edge3") && (await socks("edge3", 9001)).ok === false;
      },
      { timeoutMs: 10_000, intervalMs: 250, description: "edge3 cut off by the server and by edge1" },
    );
    console.log(`revoked node cut off after ${Math.round(performance.now() - t0)} ms`);
    expect(mesh.logs("server")).toMatch(/certificate revoked: disconnecting the node node=edge3/);
    expect(mesh.logs("edge1")).toMatch(/revocation list in effect/);
    // the others keep working, and edge3 stays out
    expect(await socks("edge2", 9001)).toMatchObject({ ok: true });
    await Bun.sleep(3000);
    const st = await mesh.serverStatus<{ reservations: Array<{ nodeName: string }> }>();
    expect(st.reservations.map((r) => r.nodeName).sort()).toEqual(["edge1", "edge2"]);
    expect(mesh.logs("server")).toContain("is revoked");
    // edge1 keeps the list for its next start; restarted, it has it before any server does
    expect(existsSync(join(mesh.dir, "edge1.revocations"))).toBe(true);
    await mesh.agents.get("edge1")!.proc.stop(5000);
    mesh.startAgent("edge1");
    // (logs() is the new process's output)
    await waitFor(() => /revocation list in effect entries=1 .*source=\S*edge1\.revocations/.test(mesh.logs("edge1")), { timeoutMs: 10_000, description: "the kept list is in effect at start" });
    await mesh.waitReserved(["edge1"], 15_000);
    expect(await socks("edge2", 9001)).toMatchObject({ ok: true });
  }, 60_000);
});
