// A local IPv4 address inside our pod CIDRs (e.g. the CNI bridge's gateway,
// cni0 10.244.1.1), from `ip -4 -o addr`: the source for this host's own
// traffic to other nodes' pods.
import { cidrContains, ip4ToInt, type Cidr4 } from "../../model/cidr.ts";
import { createExec, type Exec } from "../proxier/exec.ts";

export async function localAddressIn(cidrs: Cidr4[], exec: Exec = createExec()): Promise<string | undefined> {
  if (cidrs.length === 0) return undefined;
  const r = await exec(["ip", "-4", "-o", "addr", "show"], { check: false });
  for (const m of r.stdout.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)) {
    const ip = ip4ToInt(m[1]!);
    if (ip !== undefined && cidrs.some((c) => cidrContains(c, ip))) return m[1];
  }
  return undefined;
}
