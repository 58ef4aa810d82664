// SOCKS5 on the bridge IP (its default listen address) with the bridge not up
// yet: the tunnel module starts before the proxier that brings the IP up, and
// the agent used to exit with EADDRNOTAVAIL. Now SOCKS5 binds once the
// address exists. Runs the compiled binary in a lab namespace (root).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Lab } from "./lab/index.ts";
import { ensureBinary, tempConfigDir } from "./util/run.ts";

let lab: Lab | undefined;
beforeAll(async () => {
  lab = await Lab.create({ name: "socksstart" });
});
afterAll(async () => {
  await lab?.destroy();
});

test("SOCKS5 on the bridge IP answers once the proxier has brought the IP up; the agent keeps running", async () => {
  const binary = await ensureBinary();
  const t = tempConfigDir();
  const cfg = t.write(
    "agent.yaml",
    `nodeName: edge1\n${t.trust("edge1")}\npsk: psk\nadminListen: 127.0.0.1:10556\nagent:\n  metadata: {source: static}\n  tunnel: {listenPort: 20006}\n  proxy: {enable: true}\n  dns: {enable: false}\n  socks5: {enable: true, listen: "169.254.96.16:10800"}\n`,
  );
  const agent = lab!.spawn("edge1", [binary, "agent", "--config", cfg]);
  // a SOCKS5 greeting (version 5, one method: no authentication) is answered 05 00
  const greet = ["bash", "-c", "exec 3<>/dev/tcp/169.254.96.16/10800 && printf '\\005\\001\\000' >&3 && head -c 2 <&3 | od -An -tx1"];
  let answer = "";
  for (let i = 0; i < 40 && agent.running; i++) {
    answer = (await lab!.exec("edge1", greet, { timeoutMs: 2000 })).stdout.trim();
    if (answer) break;
    await Bun.sleep(250);
  }
  expect(agent.running, agent.output?.() ?? "").toBe(true);
  expect(answer).toBe("05 00");
}, 30_000);
