import { expect, test } from "bun:test";
import { ensureBridgeDevice } from "../../src/agent/proxier/device.ts";
import type { Exec } from "../../src/agent/proxier/exec.ts";
import { createLogger } from "../../src/log.ts";
import { withNetns, type Netns } from "./netns.ts";

const IP = "169.254.96.16";

function capture() {
  const lines: string[] = [];
  return { lines, log: createLogger("proxier", "debug", { write: (l) => lines.push(l) }) };
}

async function addrs(ns: Netns, dev: string): Promise<Array<{ local: string; label: string }>> {
  const r = await ns.exec(["ip", "-j", "-4", "addr", "show", "dev", dev]);
  return (JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string; label: string }> }>)[0]?.addr_info ?? [];
}

async function dummyAvailable(ns: Netns): Promise<boolean> {
  const r = await ns.exec(["ip", "link", "add", "probe0", "type", "dummy"], { check: false });
  if (r.code === 0) await ns.exec(["ip", "link", "del", "probe0"]);
  return r.code === 0;
}

test("creates a dummy device, else a bridge, with the IP; remove() deletes it", async () => {
  await withNetns(async (ns) => {
    const expected = (await dummyAvailable(ns)) ? "dummy" : "bridge";
    const { lines, log } = capture();
    const dev = await ensureBridgeDevice("edgemesh0", IP, log, ns.exec);
    expect(dev).toMatchObject({ kind: expected, device: "edgemesh0", created: true });
    expect((await addrs(ns, "edgemesh0")).map((a) => a.local)).toEqual([IP]);
    const link = JSON.parse((await ns.exec(["ip", "-j", "link", "show", "edgemesh0"])).stdout)[0];
    expect(link.flags).toContain("UP");
    const logged = lines.filter((l) => l.includes("bridge device"));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain(`kind=${expected}`);

    // A second agent run finds it and reuses it: not ours to delete.
    const again = await ensureBridgeDevice("edgemesh0", IP, log, ns.exec);
    expect(again).toMatchObject({ kind: expected, created: false });
    await again.remove();
    expect((await addrs(ns, "edgemesh0")).map((a) => a.local)).toEqual([IP]);

    await dev.remove();
    expect((await ns.exec(["ip", "link", "show", "edgemesh0"], { check: false })).code).not.toBe(0);
  });
});

test("an existing device without the IP gets it, and loses only that on remove()", async () => {
  await withNetns(async (ns) => {
    await ns.exec(["ip", "link", "add", "edgemesh0", "type", "bridge"]);
    await ns.exec(["ip", "addr", "add", "10.1.2.3/32", "dev", "edgemesh0"]);
    const dev = await ensureBridgeDevice("edgemesh0", IP, capture().log, ns.exec);
    expect(dev).toMatchObject({ kind: "bridge", created: false });
    expect((await addrs(ns, "edgemesh0")).map((a) => a.local).sort()).toEqual(["10.1.2.3", IP]);
    await dev.remove();
    expect((await addrs(ns, "edgemesh0")).map((a) => a.local)).toEqual(["10.1.2.3"]);
  });
});

test("a device of another kind under our name is refused", async () => {
  await withNetns(async (ns) => {
    await ns.exec(["ip", "link", "add", "edgemesh0", "type", "veth", "peer", "name", "other0"]);
    await expect(ensureBridgeDevice("edgemesh0", IP, capture().log, ns.exec)).rejects.toThrow(/veth/);
  });
});

test("falls back to lo when no link can be created; the address is labelled ours", async () => {
  await withNetns(async (ns) => {
    // Fake a kernel without dummy and bridge support.
    const noLinks: Exec = (argv, opts) =>
      argv[0] === "ip" && argv[1] === "link" && argv[2] === "add" ? Promise.resolve({ code: 2, stdout: "", stderr: "Error: Unknown device type.\n" }) : ns.exec(argv, opts);
    const { lines, log } = capture();
    const dev = await ensureBridgeDevice("edgemesh0", IP, log, noLinks);
    expect(dev).toMatchObject({ kind: "lo", device: "lo", created: true });
    expect(await addrs(ns, "lo")).toContainEqual(expect.objectContaining({ local: IP, label: "lo:edgemesh" }));
    expect(lines.join("")).toContain("kind=lo");
    // After a crash, the next run recognizes the labelled address as its own.
    const next = await ensureBridgeDevice("edgemesh0", IP, log, noLinks);
    expect(next.created).toBe(true);
    await next.remove();
    expect((await addrs(ns, "lo")).map((a) => a.local)).toEqual(["127.0.0.1"]);
  });
});
