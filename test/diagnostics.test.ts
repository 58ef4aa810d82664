// The failures operators hit most, as the agent and server report them
// (compiled binary, loopback): a psk that differs is named as such on both
// ends and on every retry (the layers above would say "Encryption failed" or
// "stream closed"), towards the server and towards another agent; a server
// that cannot be reached is named with its address and how long it has been
// down.
import { afterAll, expect, test } from "bun:test";
import { ensureBinary, freePort, tempConfigDir, until } from "./util/run.ts";

const procs: Array<ReturnType<typeof Bun.spawn>> = [];
afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
});

function spawnLogged(argv: string[]): { log: () => string } {
  const p = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe" });
  procs.push(p);
  let text = "";
  void (async () => {
    for await (const c of p.stderr) text += new TextDecoder().decode(c);
  })();
  return { log: () => text };
}

const MISMATCH = "mesh secret mismatch: the other end has a different psk, or is not an edgemesh node";

test("a different psk: both ends name it, every retry says so, and status shows it with how long the server has been down", async () => {
  const binary = await ensureBinary();
  const t = tempConfigDir();
  t.write("psk-a", "diagnostics-secret-aaaaaaaaaaaaaaaa");
  t.write("psk-b", "diagnostics-secret-bbbbbbbbbbbbbbbb");
  const serverPort = freePort();
  const server = spawnLogged([binary, "server", "--config", t.write("server.yaml", `nodeName: cloud\n${t.trust("cloud", "server")}\npsk: psk-a\nadminListen: 127.0.0.1:${freePort()}\nserver: {listenPort: ${serverPort}, listenAddresses: [127.0.0.1]}\n`)]);
  await until(() => (server.log().includes("tunnel server listening") ? true : undefined), 10_000, 50);
  // edge2 holds the right psk and listens; edge1 has the wrong one
  const edge2Port = freePort();
  spawnLogged([binary, "agent", "--config", t.write("edge2.yaml", `nodeName: edge2\n${t.trust("edge2")}\npsk: psk-a\nadminListen: 127.0.0.1:${freePort()}\nagent:\n  servers: ["127.0.0.1:${serverPort}"]\n  metadata: {source: static}\n  tunnel: {listenPort: ${edge2Port}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {enable: false}\n`)]);
  const admin = `127.0.0.1:${freePort()}`;
  const socks = freePort();
  const edge1 = spawnLogged([
    binary,
    "agent",
    "--config",
    t.write(
      "edge1.yaml",
      `nodeName: edge1\n${t.trust("edge1")}\npsk: psk-b\nadminListen: ${admin}\nagent:\n  servers: ["127.0.0.1:${serverPort}"]\n  metadata: {source: static, static: {nodes: [{name: edge2, addresses: ["127.0.0.1:${edge2Port}"]}]}}\n  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {enable: false}\n  socks5: {enable: true, listen: "127.0.0.1:${socks}"}\n`,
    ),
  ]);
  const status = async () => (await (await fetch(`http://${admin}/status`)).json()) as { servers: Array<{ error?: string; downS?: number }> };

  // several retries (backoff 0.5, 1, 2, 4 s)
  const st = await until(async () => {
    const s = await status().catch(() => undefined);
    return s?.servers[0]?.error && (s.servers[0].downS ?? 0) >= 6 ? s : undefined;
  }, 20_000, 250);
  expect(st.servers[0]!.error).toBe(MISMATCH);
  const tries = edge1.log().split("\n").filter((l) => l.includes(`cannot reach tunnel server server=127.0.0.1:${serverPort}`));
  expect(tries.length).toBeGreaterThanOrEqual(1);
  for (const l of tries) expect(l).toContain(`error="${MISMATCH}"`);
  expect(edge1.log()).not.toMatch(/Encryption failed|stream that is closed/);
  expect(edge1.log()).toContain(`${MISMATCH} (the peer at 127.0.0.1:${serverPort})`);
  expect(server.log()).toMatch(new RegExp(`${MISMATCH} \\(a peer connecting from 127\\.0\\.0\\.1:\\d+\\)`));
  // logged once a minute per remote host, not once per retry
  expect(server.log().split(MISMATCH).length - 1).toBe(1);

  const table = Bun.spawnSync([binary, "status", "--admin", admin]).stdout.toString();
  expect(table).toMatch(new RegExp(`127\\.0\\.0\\.1:${serverPort}\\s+-\\s+no\\s+no\\s+-\\s+\\(down \\d+s\\) ${MISMATCH}`));

  // towards another agent: the SOCKS5 client is refused, and the log names the cause
  const { connect } = await import("node:net");
  const reply = await new Promise<number>((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port: socks });
    let buf = Buffer.alloc(0);
    s.on("error", reject);
    s.on("connect", () => s.write(Buffer.from([5, 1, 0])));
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length === 2) s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, 5]), Buffer.from("edge2"), Buffer.from([0, 22])]));
      if (buf.length >= 4) {
        resolve(buf[3]!); // [5, 0] method reply, then [5, REP, ...]
        s.destroy();
      }
    });
  });
  expect(reply).not.toBe(0);
  await until(() => (edge1.log().includes(`cannot reach node edge2: direct: ${MISMATCH}`) ? true : undefined), 15_000, 100);
}, 60_000);

test("a server nobody listens at: its address, the reason, and how long it has been down", async () => {
  const binary = await ensureBinary();
  const t = tempConfigDir();
  const deadPort = freePort();
  const admin = `127.0.0.1:${freePort()}`;
  const edge1 = spawnLogged([binary, "agent", "--config", t.write("edge1.yaml", `nodeName: edge1\n${t.trust("edge1")}\npsk: psk\nadminListen: ${admin}\nagent:\n  servers: ["127.0.0.1:${deadPort}"]\n  metadata: {source: static}\n  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {enable: false}\n`)]);
  await until(() => (edge1.log().includes("cannot reach tunnel server") ? true : undefined), 10_000, 100);
  expect(edge1.log()).toMatch(new RegExp(`WARN  \\[tunnel\\] cannot reach tunnel server server=127\\.0\\.0\\.1:${deadPort} error="[^"]*ECONNREFUSED[^"]*" downS=0 retryMs=\\d+`));
  const st = await until(async () => {
    const s = (await (await fetch(`http://${admin}/status`)).json().catch(() => undefined)) as { servers: Array<{ error?: string; downS?: number }> } | undefined;
    return (s?.servers[0]?.downS ?? 0) >= 2 ? s : undefined;
  }, 10_000, 200);
  expect(st.servers[0]!.error).toContain("ECONNREFUSED");
}, 30_000);

test("something that is not edgemesh at the server's address is named as such, not as a stream error", async () => {
  const binary = await ensureBinary();
  const t = tempConfigDir();
  // reads what the agent sends, then hangs up, as an HTTP or SSH server does with garbage
  const other = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s) => void s.end() } });
  try {
    const admin = `127.0.0.1:${freePort()}`;
    const edge1 = spawnLogged([binary, "agent", "--config", t.write("edge1.yaml", `nodeName: edge1\n${t.trust("edge1")}\npsk: psk\nadminListen: ${admin}\nagent:\n  servers: ["127.0.0.1:${other.port}"]\n  metadata: {source: static}\n  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {enable: false}\n`)]);
    await until(() => (edge1.log().includes("cannot reach tunnel server") ? true : undefined), 10_000, 100);
    expect(edge1.log()).toContain(`server=127.0.0.1:${other.port} error="privnet: the other end closed the connection during the handshake (not an edgemesh node, or its privateNetwork setting differs)"`);
  } finally {
    other.stop(true);
  }
}, 30_000);
