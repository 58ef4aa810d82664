// The agent's own proxier module (default binaries, no prefix), run as a
// process inside a namespace, as the agent would run on a host.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ROUTE_PROTO } from "../../src/agent/proxier/routes.ts";
import { BUN } from "../util/run.ts";
import { BRIDGE_IP, FOREIGN_NAT, chainRules, foreign, ours, table } from "./fixtures.ts";
import { connectIn, serveIn } from "./harness.ts";
import { withNetns, type Backend } from "./netns.ts";

// Whatever the `iptables` alternative is on this host.
const HOST: Backend = { name: "nft", iptables: "iptables", restore: "iptables-restore", save: "iptables-save" };

test("the module as the agent runs it: device, jumps, DNAT, a real connection, clean stop", async () => {
  await withNetns(async (ns) => {
    await ns.exec([HOST.restore], { stdin: FOREIGN_NAT });
    const foreignBefore = foreign(await ns.natSave(HOST));
    const proc = Bun.spawn(["ip", "netns", "exec", ns.name, BUN, join(import.meta.dir, "run-proxier.ts")], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const lines = (async function* () {
      let buf = "";
      for await (const chunk of proc.stdout) {
        buf += new TextDecoder().decode(chunk);
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          yield buf.slice(0, i);
          buf = buf.slice(i + 1);
        }
      }
    })();
    const next = async () => {
      const r = await lines.next();
      if (r.done) throw new Error(`driver exited: ${await new Response(proc.stderr).text()}`);
      return r.value;
    };
    let server: Awaited<ReturnType<typeof serveIn>> | undefined;
    try {
      // The device exists once the module started: only then can a listener bind the bridge IP.
      expect(await next()).toBe("started");
      server = await serveIn(ns, BRIDGE_IP, 40001);
      proc.stdin.write(JSON.stringify(table(1, [{ clusterIPs: ["10.96.0.10"], port: 80, listenPort: 40001 }])) + "\n");
      proc.stdin.flush();
      expect(JSON.parse(await next())).toMatchObject({ device: expect.stringMatching(/^(dummy|bridge)$/), rules: 1, generation: 1, routesAdded: 1 });

      const save = await ns.natSave(HOST);
      expect(parseFirst(save, "PREROUTING")).toContain("-j EDGEMESH-PREROUTING");
      expect(parseFirst(save, "OUTPUT")).toContain("-j EDGEMESH-OUTPUT");
      expect(foreign(save)).toEqual(foreignBefore);
      expect(await connectIn(ns, "10.96.0.10", 80)).toEqual({ code: 0, out: "hello from listener" });
      expect(await server.accepted()).toBe(`accepted ${BRIDGE_IP}:40001`);

      proc.stdin.write("stop\n");
      proc.stdin.end();
      expect(await next()).toBe("stopped");
      expect(await proc.exited).toBe(0);
      const after = await ns.natSave(HOST);
      expect(ours(after)).toEqual([]);
      expect(foreign(after)).toEqual(foreignBefore);
      expect((await ns.exec(["ip", "-o", "route", "show", "proto", String(ROUTE_PROTO)])).stdout).toBe("");
      expect((await ns.exec(["ip", "link", "show", "edgemesh0"], { check: false })).code).not.toBe(0);
    } finally {
      server?.kill();
      proc.kill();
    }
  });
});

const parseFirst = (save: string[], chain: string) => chainRules(save, chain)[0] ?? "";
