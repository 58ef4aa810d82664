// `edgemesh status`: fetches /status from an admin endpoint and renders it.
import type { IdentityStatus, PodNetworkStatus, StatusDoc } from "../admin/status.ts";
import { DEFAULT_ADMIN } from "../config/load.ts";
import type { NatReport } from "../agent/tunnel/nat-report.ts";

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

function duration(s: number): string {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

/** "v2 certificate: agent edge1, 300 days left" (or v1) */
function identityLine(id: IdentityStatus | undefined): string {
  if (!id || id.version === 1) return "v1 (keys derived from the psk; no certificate)";
  const soon = id.daysLeft <= 14 ? "! " : "";
  return `v2 certificate: ${id.role} ${id.node}, serial ${id.serial}, ${soon}${id.daysLeft <= 0 ? "EXPIRED" : `${Math.floor(id.daysLeft)} days left`}; ${id.revocations} revoked`;
}

/** "nat  endpoint-dependent (2 observers see 2 different addresses ...)" */
function natRow(nat: NatReport | undefined): string[][] {
  if (!nat) return [];
  return [["nat mapping", `${nat.mapping}: ${nat.detail}${nat.observed.length ? ` [${nat.observed.map((o) => o.address).join(", ")}]` : ""}`]];
}

export function renderStatus(doc: StatusDoc): string {
  const out: string[] = [];
  out.push(
    table(
      ["", ""],
      [
        ["role", doc.role],
        ["node", doc.nodeName],
        ["version", doc.version],
        ["peer id", doc.peerId || "-"],
        ["identity", identityLine(doc.identity as IdentityStatus | undefined)],
        ["uptime", duration(doc.uptimeSeconds)],
        ["ready", doc.ready ? "yes" : "no"],
        ["services", String(doc.services)],
        ...natRow(doc.nat as NatReport | undefined),
      ],
    )
      .split("\n")
      .slice(1)
      .join("\n"),
  );
  const md = doc.metadata as
    | { source: string; server?: string; endpointsApi?: string; resources?: Array<{ resource: string; state: string; since: string; resourceVersion: string; objects: number; rejectedNow?: number; rejected?: Array<{ object: string; reason: string }> }> }
    | undefined;
  if (md) {
    out.push("", `METADATA  source=${md.source}${md.server ? ` server=${md.server}` : ""}${md.endpointsApi ? ` endpoints=${md.endpointsApi}` : ""}`);
    if (md.resources?.length) {
      out.push(table(["RESOURCE", "STATE", "SINCE", "OBJECTS", "REJECTED", "RESOURCEVERSION"], md.resources.map((r) => [r.resource, r.state, r.since, String(r.objects), String(r.rejectedNow ?? 0), r.resourceVersion || "-"])));
      const rejected = md.resources.flatMap((r) => (r.rejected ?? []).map((x) => [r.resource, JSON.stringify(x.object), x.reason]));
      // names and reasons are the source's text: quoted, so a crafted one cannot forge lines
      if (rejected.length) out.push("", "REJECTED OBJECTS", table(["RESOURCE", "OBJECT", "REASON"], rejected.map((row) => row.map((c) => c.replace(/[\x00-\x1f\x7f]/g, "?")))));
    }
  }
  out.push("", "MODULES", table(["NAME", "STATE", "READY"], doc.modules.map((m) => [m.name, m.state, m.ready ? "yes" : "no"])));
  if (doc.role === "agent" || doc.servers.length) {
    out.push(
      "",
      "SERVERS",
      doc.servers.length
        ? table(
            ["ADDRESS", "KIND", "CONNECTED", "RESERVATION", "RTT", "LAST ERROR"],
            doc.servers.map((s) => [s.address, s.kind ?? "-", s.connected ? "yes" : "no", s.reservation ? "yes" : "no", s.rttMs === undefined ? "-" : `${s.rttMs.toFixed(1)}ms`, s.error ? `${s.downS !== undefined ? `(down ${duration(s.downS)}) ` : ""}${s.error}` : ""]),
          )
        : "(none)",
    );
  }
  out.push(
    "",
    "PEERS",
    doc.peers.length
      ? table(
          ["NODE", "PATH", "RTT", "CERT", "PEER ID", "NOTE"],
          doc.peers.map((p) => [
            p.nodeName || "?",
            p.path,
            p.rttMs === null ? "-" : `${p.rttMs.toFixed(1)}ms`,
            p.certificate ? `${p.certificate.role}, ${p.certificate.daysLeft <= 14 ? "! " : ""}${Math.floor(p.certificate.daysLeft)}d` : "-",
            p.peerId,
            // relayed traffic costs the server's bandwidth and a longer path: say so
            p.path === "relayed" ? `! relay only${p.relayedReason ? `: ${p.relayedReason}` : ""}` : "",
          ]),
        )
      : "(none)",
  );
  if (doc.listeners.length) {
    const endpoints = (l: (typeof doc.listeners)[number]) => {
      const by = Object.entries(l.endpointsByNode ?? {});
      if (!l.endpointsByNode) return "";
      return by.length ? by.map(([n, c]) => `${n}:${c}`).join(" ") : "! none (connections refused)";
    };
    out.push("", "LISTENERS", table(["SERVICE", "PROTO", "ADDRESS", "ENDPOINTS"], doc.listeners.map((l) => [l.service, l.protocol, l.address, endpoints(l)])));
  }
  const pn = doc.podNetwork as PodNetworkStatus | undefined;
  if (pn) {
    const byNode = new Map(pn.peers.map((p) => [p.node, p]));
    const nodes = [...new Set([...pn.routes.map((r) => r.node), ...byNode.keys()])].sort();
    const drops = Object.entries(pn.dropped).filter(([, n]) => n > 0);
    out.push("", `POD NETWORK  device=${pn.device} mtu=${pn.mtu} own=${pn.ownCIDRs.join(",") || "! none"} lane=${pn.lane ? `udp/${pn.lane.port}${pn.lane.public ? ` public=${pn.lane.public}` : ""}` : "off"}${drops.length ? ` dropped: ${drops.map(([r, n]) => `${r}=${n}`).join(" ")}` : ""}`);
    out.push(
      table(
        ["NODE", "POD CIDRS", "PATH", "LANE", "PACKETS OUT", "PACKETS IN", "LANE OUT", "LANE IN"],
        nodes.map((n) => {
          const p = byNode.get(n);
          const lane = p?.lane ?? "-";
          return [
            n,
            pn.routes.filter((r) => r.node === n).map((r) => r.cidr).join(",") || "-",
            p?.path ?? "-",
            lane === "probing" ? "! probing (no answer yet)" : lane,
            String(p?.packetsOut ?? 0),
            String(p?.packetsIn ?? 0),
            String(p?.lanePacketsOut ?? 0),
            String(p?.lanePacketsIn ?? 0),
          ];
        }),
      ),
    );
    for (const r of pn.refused) out.push(`  ! ${r.node} ${r.cidr} not routed: ${r.reason}`);
  }
  const flagged = doc.listeners.filter((l) => l.endpointsByNode && Object.keys(l.endpointsByNode).length === 0).length;
  const relayed = doc.peers.filter((p) => p.path === "relayed").length;
  if (flagged || relayed) {
    out.push("", "ATTENTION");
    if (flagged) out.push(`  ${flagged} service port(s) without ready endpoints: their clients are refused`);
    if (relayed) out.push(`  ${relayed} peer(s) reachable only through a tunnel server's relay`);
  }
  return out.join("\n") + "\n";
}

export class StatusFetchError extends Error {}

async function fetchOne(admin: string, timeoutMs: number): Promise<StatusDoc> {
  const url = `http://${admin}/status`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why =
      code === "ConnectionRefused" || code === "ECONNREFUSED"
        ? "connection refused"
        : (e as Error).name === "TimeoutError"
          ? `no answer within ${timeoutMs} ms`
          : (e as Error).message;
    throw new StatusFetchError(`${admin}: ${why}`);
  }
  if (!res.ok) throw new StatusFetchError(`${admin}: HTTP ${res.status}`);
  try {
    return (await res.json()) as StatusDoc;
  } catch {
    throw new StatusFetchError(`${admin}: answered, but not with a status document (is it an edgemesh admin endpoint?)`);
  }
}

/** tries the given endpoint, or the agent's then the server's default */
export async function fetchStatus(admin: string | undefined, timeoutMs = 3000): Promise<StatusDoc> {
  const targets = admin ? [admin] : [DEFAULT_ADMIN.agent, DEFAULT_ADMIN.server];
  const errors: string[] = [];
  for (const t of targets) {
    try {
      return await fetchOne(t, timeoutMs);
    } catch (e) {
      if (!(e instanceof StatusFetchError)) throw e;
      errors.push(e.message);
    }
  }
  throw new StatusFetchError(
    `no edgemesh admin endpoint answered (${errors.join("; ")}).\nIs the agent or server running? Its adminListen may differ: pass --admin HOST:PORT.`,
  );
}
