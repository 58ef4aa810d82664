// The device that carries the bridge IP our listeners bind to. A dummy device
// is the lightest; upstream EdgeMesh uses a bridge, which works where the
// dummy module is missing; as a last resort the IP goes on `lo`.
import type { Logger } from "../../log.ts";
import { createExec, type Exec } from "./exec.ts";

export type DeviceKind = "dummy" | "bridge" | "lo";

export interface BridgeDevice {
  kind: DeviceKind;
  /** the interface that holds the IP (the configured name, or `lo`) */
  device: string;
  /** true when we created the link (or, for lo, added the address) */
  created: boolean;
  /** undoes only what ensureBridgeDevice did */
  remove(): Promise<void>;
}

// Marks an address we put on lo, so a restart after a crash still knows it is ours.
const LO_LABEL = "lo:edgemesh";

/** the link's kind ("dummy", "bridge", "veth", "" for a physical NIC), or undefined when absent */
async function linkKind(exec: Exec, name: string): Promise<string | undefined> {
  const r = await exec(["ip", "-d", "-j", "link", "show", "dev", name], { check: false });
  if (r.code !== 0) return undefined;
  const links = JSON.parse(r.stdout) as Array<{ linkinfo?: { info_kind?: string } }>;
  return links[0]?.linkinfo?.info_kind ?? "";
}

/** the labels of a device's addresses equal to ip (none when it lacks the IP) */
async function addrLabels(exec: Exec, dev: string, ip: string): Promise<string[]> {
  const r = await exec(["ip", "-j", "-4", "addr", "show", "dev", dev]);
  const links = JSON.parse(r.stdout) as Array<{ addr_info?: Array<{ local?: string; label?: string }> }>;
  return (links[0]?.addr_info ?? []).filter((a) => a.local === ip).map((a) => a.label ?? dev);
}

export async function ensureBridgeDevice(name: string, ip: string, log: Logger, exec: Exec = createExec()): Promise<BridgeDevice> {
  const existing = await linkKind(exec, name);
  if (existing !== undefined) {
    if (existing !== "dummy" && existing !== "bridge") {
      throw new Error(`device ${name} exists but is a ${existing || "physical"} device, not one we can use; choose another agent.proxy.bridgeDeviceName`);
    }
    await exec(["ip", "link", "set", name, "up"]);
    const hasIP = (await addrLabels(exec, name, ip)).length > 0;
    if (!hasIP) await exec(["ip", "addr", "add", `${ip}/32`, "dev", name]);
    log.info("bridge device reused", { device: name, ip, kind: existing, addedIP: !hasIP });
    return {
      kind: existing,
      device: name,
      created: false,
      remove: async () => {
        if (!hasIP) await exec(["ip", "addr", "del", `${ip}/32`, "dev", name], { check: false });
      },
    };
  }

  const failures: string[] = [];
  for (const kind of ["dummy", "bridge"] as const) {
    const r = await exec(["ip", "link", "add", name, "type", kind], { check: false });
    if (r.code !== 0) {
      failures.push(`${kind}: ${r.stderr.trim() || `exit ${r.code}`}`);
      continue;
    }
    try {
      await exec(["ip", "link", "set", name, "up"]);
      await exec(["ip", "addr", "add", `${ip}/32`, "dev", name]);
    } catch (e) {
      await exec(["ip", "link", "del", name], { check: false });
      throw e;
    }
    log.info("bridge device created", { device: name, ip, kind, ...(failures.length ? { fallback: failures.join("; ") } : {}) });
    return { kind, device: name, created: true, remove: () => exec(["ip", "link", "del", name], { check: false }).then(() => undefined) };
  }

  // Neither link type is available: put the IP on lo, labelled as ours.
  const labels = await addrLabels(exec, "lo", ip);
  const ours = labels.length === 0 || labels.includes(LO_LABEL);
  if (labels.length === 0) await exec(["ip", "addr", "add", `${ip}/32`, "dev", "lo", "label", LO_LABEL]);
  log.warn("bridge IP on lo: cannot create a device", { device: "lo", ip, kind: "lo", created: ours, fallback: failures.join("; ") });
  return {
    kind: "lo",
    device: "lo",
    created: ours,
    remove: async () => {
      if (ours) await exec(["ip", "addr", "del", `${ip}/32`, "dev", "lo"], { check: false });
    },
  };
}
