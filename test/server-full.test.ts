// A tunnel server whose reservation table is full says so in its own log
// (libp2p would refuse quietly), and the refused agent's status shows it.
// Everything on loopback.
import { afterAll, expect, test } from "bun:test";
import { ensureBinary, freePort, tempConfigDir, until } from "./util/run.ts";

const procs: Array<ReturnType<typeof Bun.spawn>> = [];
afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
});

test("maxReservations reached: the server logs it once; the next agent holds no reservation", async () => {
  const binary = await ensureBinary();
  const t = tempConfigDir();
  t.write("psk", "server-full-test-secret-0123456789");
  const serverPort = freePort();
  const serverAdmin = `127.0.0.1:${freePort()}`;
  const server = Bun.spawn(
    [binary, "server", "--config", t.write("server.yaml", `nodeName: cloud\n${t.trust("cloud", "server")}\npsk: psk\nadminListen: ${serverAdmin}\nserver:\n  listenPort: ${serverPort}\n  listenAddresses: [127.0.0.1]\n  advertiseAddresses: [127.0.0.1]\n  maxReservations: 1\n`)],
    { stdout: "pipe", stderr: "pipe" },
  );
  procs.push(server);
  let serverLog = "";
  void (async () => {
    for await (const c of server.stderr) serverLog += new TextDecoder().decode(c);
  })();
  const agent = (name: string) => {
    const admin = `127.0.0.1:${freePort()}`;
    const cfg = t.write(
      `${name}.yaml`,
      `nodeName: ${name}\n${t.trust(name)}\npsk: psk\nadminListen: ${admin}\nagent:\n  servers: ["127.0.0.1:${serverPort}"]\n  metadata: {source: static}\n  tunnel: {listenPort: ${freePort()}, listenAddresses: [127.0.0.1]}\n  proxy: {enable: false}\n  dns: {enable: false}\n`,
    );
    const p = Bun.spawn([binary, "agent", "--config", cfg], { stdout: "ignore", stderr: "ignore" });
    procs.push(p);
    return async () => (await (await fetch(`http://${admin}/status`)).json()) as { servers: Array<{ reservation: boolean; error?: string }> };
  };
  const first = agent("edge1");
  await until(async () => ((await first().catch(() => undefined))?.servers[0]?.reservation ? true : undefined), 15_000, 200);
  const second = agent("edge2");
  await until(() => (serverLog.includes("reservation table full") ? true : undefined), 10_000, 100);
  const st = await until(async () => {
    const s = await second().catch(() => undefined);
    return s?.servers[0]?.error ? s : undefined;
  }, 15_000, 200);
  expect(st.servers[0]!.reservation).toBe(false);
  expect(serverLog.match(/reservation table full/g)).toHaveLength(1);
  expect(serverLog).toContain("held=1 max=1");
}, 60_000);
