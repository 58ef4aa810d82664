// Hostile metadata, end to end through the pure path a root command is made
// on: random and crafted objects → the kind's schema (as the reflector runs it)
// → the service table → the listener table → iptables-restore input and
// `ip -batch` lines. Whatever comes in, nothing outside the two grammars
// comes out, and every valid service still gets its rules.
import { expect, test } from "bun:test";
import { buildServices } from "../src/agent/controller/convert.ts";
import { KIND_SCHEMAS, rejectionOf } from "../src/agent/controller/objects.ts";
import { listenerRuleset } from "../src/agent/proxier/ruleset.ts";
import { Routes } from "../src/agent/proxier/routes.ts";
import type { Exec } from "../src/agent/proxier/exec.ts";
import type { KubeObject } from "../src/kube/reflector.ts";
import type { ListenerEntry } from "../src/model/listeners.ts";
import { seededRandom } from "./util/xorshift.ts";

const OCTET = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IP4 = `${OCTET}(\\.${OCTET}){3}`;
const PORT = "([1-9]\\d{0,4})";
const RULE = new RegExp(
  `^-A EDGEMESH-SERVICES -d ${IP4}/32 -p (tcp|udp) -m (tcp|udp) --dport ${PORT} -m comment --comment "[A-Za-z0-9./:_-]{1,200}" -j DNAT --to-destination 169\\.254\\.96\\.16:${PORT}$`,
);
const LAYOUT = new Set(["*nat", ":EDGEMESH-PREROUTING - [0:0]", ":EDGEMESH-OUTPUT - [0:0]", ":EDGEMESH-SERVICES - [0:0]", "-A EDGEMESH-PREROUTING -j EDGEMESH-SERVICES", "-A EDGEMESH-OUTPUT -j EDGEMESH-SERVICES", "COMMIT", ""]);
const ROUTE = new RegExp(`^route (get ${IP4}|(add|del) ${IP4}/32 dev edgemesh0 proto 96)$`);

const NASTY = [
  "\n",
  "\r\n",
  '"',
  "'",
  " ",
  "\t",
  "\u0000",
  "\u2028",
  "-j ACCEPT",
  "\nCOMMIT\n*filter\n-A INPUT -j ACCEPT",
  "\nnetns exec x touch /tmp/pwned",
  " dev lo",
  "/0",
  "%eth0",
  "$(id)",
  "`id`",
  ";",
  "#",
  "\\",
  "-",
  "..",
];
const ODD_IPS = ["10.96.0.1", "0.0.0.0", "127.0.0.1", "169.254.169.254", "224.0.0.1", "255.255.255.255", "010.96.0.1", "10.96.0.256", "10.96.0", "::1", "fd00::1", "fe80::1%eth0", "::ffff:10.96.0.9", "1.2.3.4/8", "None", "", " 10.96.0.7"];
const ODD_PORTS: unknown[] = [0, -1, 1, 53, 65535, 65536, 80.5, "80", "http", null, 1e21, Number.NaN];

test("random and crafted objects never put anything outside the grammar into iptables or ip input", async () => {
  const rnd = seededRandom(0x5eed15);
  const pick = <T,>(xs: readonly T[]) => xs[rnd(xs.length)]!;
  const maybeNasty = (base: string) => (rnd(4) === 0 ? base + pick(NASTY) + (rnd(2) ? base : "") : base);
  const ip = () => (rnd(3) === 0 ? maybeNasty(pick(ODD_IPS)) : `10.96.${rnd(256)}.${rnd(256)}`);
  const port = () => (rnd(4) === 0 ? pick(ODD_PORTS) : 1 + rnd(65535));
  const name = (base: string) => maybeNasty(base);

  const objects = { services: [] as unknown[], endpointslices: [] as unknown[] };
  const validNames = new Set<string>();
  for (let i = 0; i < 3000; i++) {
    const svcName = name(`svc${i}`);
    const ports = Array.from({ length: rnd(20) === 0 ? 300 : 1 + rnd(3) }, (_, j) => ({
      name: rnd(5) === 0 ? name(`p${j}`) : `p${j}`,
      port: port(),
      protocol: pick(["TCP", "UDP", "SCTP", "tcp", 7, undefined]),
      targetPort: rnd(2) ? port() : name("http"),
    }));
    const clusterIP = ip();
    const svc: Record<string, unknown> = {
      metadata: { name: svcName, namespace: rnd(10) === 0 ? name("ns") : "demo" },
      spec: rnd(30) === 0 ? "not an object" : { clusterIP, clusterIPs: rnd(10) === 0 ? [clusterIP, ip(), ip()] : [clusterIP], ports: rnd(30) === 0 ? { length: 3 } : ports },
    };
    objects.services.push(svc);
    objects.endpointslices.push({
      metadata: { name: `${svcName}-x`, namespace: "demo", labels: { "kubernetes.io/service-name": svcName } },
      addressType: pick(["IPv4", "IPv6", "FQDN", "bogus"]),
      endpoints: [{ addresses: [ip()], nodeName: name("edge2"), hostname: rnd(5) === 0 ? name("h") : undefined }],
      ports: [{ name: "http", port: port(), protocol: "TCP" }],
    });
  }
  // a few that must pass, whatever the random ones did
  for (let i = 0; i < 5; i++) {
    const n = `good${i}`;
    validNames.add(`demo/${n}`);
    objects.services.push({ metadata: { name: n, namespace: "demo" }, spec: { clusterIP: `10.97.0.${i + 1}`, ports: [{ name: "http", port: 80, protocol: "TCP" }] } });
  }

  const accepted = (kind: "services" | "endpointslices") =>
    objects[kind].filter((o) => typeof (o as KubeObject).metadata?.name === "string" && rejectionOf(KIND_SCHEMAS[kind]!, o) === undefined) as KubeObject[];
  const services = buildServices({ services: accepted("services"), slices: accepted("endpointslices") });
  for (const n of validNames) expect(services.some((s) => `${s.namespace}/${s.name}` === n)).toBe(true);

  // the traffic module's table: one listener per service port
  let listenPort = 20000;
  const entries: ListenerEntry[] = [];
  for (const s of services) {
    if (s.headless || s.type !== "ClusterIP") continue;
    for (const p of s.ports) entries.push({ service: `${s.namespace}/${s.name}`, portName: p.name, clusterIPs: s.clusterIPs, port: p.port, protocol: p.protocol, listenPort: listenPort++ });
  }
  const { text, interceptions } = listenerRuleset({ bridgeIP: "169.254.96.16", generation: 1, entries });
  const lines = text.split("\n");
  const bad = lines.filter((l) => !LAYOUT.has(l) && !RULE.test(l));
  expect(bad).toEqual([]);
  expect(interceptions).toBe(lines.filter((l) => RULE.test(l)).length);
  for (const n of validNames) expect(text).toContain(`--comment "${n}:http"`);

  const batches: string[] = [];
  const exec: Exec = async (argv, opts) => {
    if (argv.includes("-batch")) batches.push(String(opts?.stdin ?? ""));
    // every `route get` fails, so every ClusterIP gets an `add`
    const n = String(opts?.stdin ?? "").split("\n").filter(Boolean).length;
    const stderr = argv.includes("-batch") && String(opts?.stdin).startsWith("route get") ? Array.from({ length: n }, (_, i) => `Command failed -:${i + 1}`).join("\n") : "";
    return { code: stderr ? 1 : 0, stdout: "", stderr };
  };
  const routes = new Routes("edgemesh0", exec);
  await routes.ensureRoutes(services.flatMap((s) => s.clusterIPs));
  await routes.removeRoutes();
  const routeLines = batches.join("\n").split("\n").filter(Boolean);
  expect(routeLines.length).toBeGreaterThan(10);
  expect(routeLines.filter((l) => !ROUTE.test(l))).toEqual([]);
  // the generator did make hostile objects, and the schema refused them
  expect(objects.services.length - accepted("services").length).toBeGreaterThan(500);
});
