// Host routes for ClusterIPs. The kernel picks a route before nat OUTPUT runs,
// so on a host without a default route a connect() to a ClusterIP fails with
// "Network unreachable" before our DNAT could apply. For each ClusterIP with
// no route we add IP/32 on our device; routes we did not add are never
// replaced or deleted. Ours carry a protocol number, so a restart after a
// crash finds and adopts them instead of leaking them.
import { createExec, type Exec } from "./exec.ts";
import { isIPv4, routeLine, type RouteOp } from "./commands.ts";

/** rtnetlink protocol id marking our routes (unassigned in iproute2's rt_protos) */
export const ROUTE_PROTO = 96;

export class Routes {
  private readonly ours = new Set<string>();
  private adopted = false;

  constructor(
    private readonly device: string,
    private readonly exec: Exec = createExec(),
  ) {}

  /** the ClusterIPs we added a route for */
  get added(): ReadonlySet<string> {
    return this.ours;
  }

  /**
   * Routes exactly the given IPv4 addresses that lack one; drops ours that are
   * no longer wanted. A few processes in all, whatever the number of IPs.
   */
  async ensureRoutes(ips: Iterable<string>): Promise<{ added: number; removed: number }> {
    await this.adopt();
    // only dotted-quad IPv4 reaches a batch line (commands.ts checks it again)
    const want = new Set([...ips].filter(isIPv4));
    const removed = await this.del([...this.ours].filter((ip) => !want.has(ip)));
    const candidates = [...want].filter((ip) => !this.ours.has(ip));
    const unrouted = await this.unrouted(candidates);
    let added = 0;
    if (unrouted.length) {
      const failed = await this.batch("add", unrouted);
      // A failed add (e.g. "File exists": someone routed it meanwhile) is not ours.
      unrouted.forEach((ip, i) => {
        if (!failed.has(i + 1)) {
          this.ours.add(ip);
          added++;
        }
      });
    }
    return { added, removed };
  }

  /** deletes every route we added */
  async removeRoutes(): Promise<void> {
    await this.adopt();
    await this.del([...this.ours]);
  }

  /** routes left by an earlier run of ours (same protocol id, same device) become ours again */
  private async adopt(): Promise<void> {
    if (this.adopted) return;
    const r = await this.exec(["ip", "-4", "-o", "route", "show", "proto", String(ROUTE_PROTO), "dev", this.device], { check: false });
    for (const line of r.stdout.split("\n")) {
      const dst = line.trim().split(/\s+/)[0];
      if (dst && isIPv4(dst)) this.ours.add(dst);
    }
    this.adopted = true;
  }

  private async del(ips: string[]): Promise<number> {
    if (!ips.length) return 0;
    // proto in the selector: the kernel refuses to delete a route that is not marked ours.
    await this.batch("del", ips);
    for (const ip of ips) this.ours.delete(ip);
    return ips.length;
  }

  /** the addresses `ip route get` finds no route for */
  private async unrouted(ips: string[]): Promise<string[]> {
    if (!ips.length) return [];
    const failed = await this.batch("get", ips);
    return ips.filter((_, i) => failed.has(i + 1));
  }

  /** runs one command per IP through one `ip -force -batch -`; returns the 1-based numbers of lines that failed */
  private async batch(op: RouteOp, ips: string[]): Promise<Set<number>> {
    const lines = ips.map((ip) => routeLine(op, ip, this.device, ROUTE_PROTO));
    if (lines.some((l) => l === undefined)) throw new Error(`route ${op}: an address or the device name is not one we write commands with`);
    const r = await this.exec(["ip", "-force", "-batch", "-"], { stdin: lines.join("\n") + "\n", check: false });
    const failed = new Set<number>();
    for (const m of r.stderr.matchAll(/Command failed -:(\d+)/g)) failed.add(Number(m[1]));
    if (r.code !== 0 && failed.size === 0) throw new Error(`ip -batch failed: exit ${r.code}: ${r.stderr.trim().slice(-500)}`);
    return failed;
  }
}
