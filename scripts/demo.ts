// The one-command demo (`npm run demo`): a tunnel server and three agents,
// two small web backends, and requests by service name crossing the mesh.
//
// As root with `ip netns`: the NAT lab (test/lab) — cloud with the server,
// edge1 + edge3 on one LAN behind nat1, edge2 behind nat2 — with real
// iptables interception and the agents' DNS, so edge1 runs a plain
// `curl http://hello.demo/`. Otherwise everything runs on loopback with
// distinct ports, and requests go through edge1's SOCKS5 front door.
//
// Services come from the agents' static config; `--kube` serves them from a
// fake Kubernetes apiserver instead and changes them with kubectl while the
// mesh runs (lab mode). Everything is removed at the end, also on Ctrl-C.
// Usage: bun scripts/demo.ts [--kube] [--loopback]
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, freePort, ROOT } from "../test/util/run.ts";
import { caCommand } from "../test/lab/mesh.ts";

const args = new Set(process.argv.slice(2));
for (const a of args) if (!["--kube", "--loopback"].includes(a)) {
  console.error(`demo: unknown option ${a}\nusage: bun scripts/demo.ts [--kube] [--loopback]`);
  process.exit(2);
}
const KUBE = args.has("--kube");
const t0 = performance.now();
let stepNo = 0;
const step = (s: string) => console.log(`\n[${++stepNo}] ${s}  (+${((performance.now() - t0) / 1000).toFixed(1)} s)`);
const info = (s: string) => console.log(`    ${s}`);
const indent = (s: string) => s.trimEnd().split("\n").map((l) => `      ${l}`).join("\n");

/** root, and `ip netns` works here */
async function canUseLab(): Promise<string | undefined> {
  if (args.has("--loopback")) return "--loopback given";
  if (process.getuid?.() !== 0) return "not root";
  const p = Bun.spawnSync(["ip", "netns", "list"], { stderr: "pipe" });
  if (!p.success) return `ip netns does not work here (${p.stderr.toString().trim() || "ip not found"})`;
  for (const t of ["iptables", "curl", ...(KUBE ? ["kubectl"] : [])]) if (!Bun.which(t)) return `${t} is not installed`;
  return undefined;
}

const HELLO = { name: "hello", ip: "10.96.0.10" };
const WORLD = { name: "world", ip: "10.96.0.20" };

const binary = await ensureBinary();
console.log(`EdgeMesh demo: ${binary}`);
const why = await canUseLab();
if (why) {
  if (KUBE) info(`--kube needs the lab (root, ip netns); ${why}: running the static demo on loopback`);
  await loopbackDemo(why);
} else {
  await labDemo();
}
console.log(`\nDone in ${((performance.now() - t0) / 1000).toFixed(1)} s; everything the demo started has been removed.`);

// ---------------------------------------------------------------- the NAT lab

async function labDemo(): Promise<void> {
  const { Lab, BUN } = await import("../test/lab/index.ts");
  const { startMesh, ADMIN, SERVER_ADMIN } = await import("../test/lab/mesh.ts");
  step("Building a small NAT lab of Linux network namespaces");
  const lab = await Lab.create({ name: "demo", onStep: (s) => info(`lab: ${s}`) });
  const h = lab.hosts;
  let resolvDir = "";
  let madeEtcNetns = false;
  const removeResolvConf = () => {
    if (resolvDir) rmSync(resolvDir, { recursive: true, force: true });
    if (madeEtcNetns) rmSync("/etc/netns", { recursive: true, force: true });
    resolvDir = "";
  };
  // On Ctrl-C the lab's own handler (test/lab) kills every process in the
  // namespaces, deletes them and re-raises the signal; this one, which runs
  // in the same dispatch, removes the one file the demo put outside them.
  // Under Bun the re-raised signal does not always end the process, so exit
  // once both handlers are done.
  const onSignal = () => {
    console.log("\ninterrupted: removing the lab");
    removeResolvConf();
    setTimeout(() => process.exit(130), 0);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const cleanup = async () => {
    removeResolvConf();
    await lab.destroy();
  };
  try {
    console.log(`
                   cloud ${h.cloud.ip}  (edgemesh server: relay, hole-punch helper)
                     │  WAN ${h.cloud.ip.replace(/\.\d+$/, ".0/24")}
          ┌──────────┴──────────┐
        nat1 ${h.nat1.ip}    nat2 ${h.nat2.ip}    (MASQUERADE, unsolicited inbound dropped)
          │                     │
   edge1 ${h.edge1.ip}      edge2 ${h.edge2.ip}
   edge3 ${h.edge3.ip}      (LAN2)
   (LAN1)`);

    step("Starting the web backends: hello on edge3 (same LAN as edge1), world on edge2 (behind the other NAT)");
    const backend = join(ROOT, "test/fixtures/http-id.ts");
    const b3 = lab.spawn("edge3", [BUN, backend, h.edge3.ip, "8080", "hello from edge3"]);
    const b2 = lab.spawn("edge2", [BUN, backend, h.edge2.ip, "8080", "world from edge2"]);
    await Promise.all([b3.waitForOutput(/listening/, { timeoutMs: 10_000 }), b2.waitForOutput(/listening/, { timeoutMs: 10_000 })]);
    info(`hello: ${h.edge3.ip}:8080 on edge3;  world: ${h.edge2.ip}:8080 on edge2`);

    let api: import("../test/lab/proc.ts").LabProcess | undefined;
    let apiUrl = "";
    if (KUBE) {
      step("Starting a fake Kubernetes apiserver on cloud (services come from it, changed with kubectl)");
      apiUrl = `http://${h.cloud.ip}:6443`;
      api = lab.spawn("cloud", [BUN, join(ROOT, "test/fixtures/fake-apiserver-main.ts"), h.cloud.ip, "6443"]);
      await api.waitForOutput(/listening/, { timeoutMs: 10_000 });
      info(`apiserver: ${apiUrl}`);
    }
    const kubectl = (argv: string[], stdin?: string) =>
      lab.execOrThrow("cloud", ["kubectl", `--server=${apiUrl}`, ...argv], { stdin, timeoutMs: 20_000 });

    const svc = (s: { name: string; ip: string }, ep: string, node: string) =>
      `- {name: ${s.name}, namespace: demo, clusterIP: ${s.ip}, ports: [{name: http, port: 80, targetPort: 8080}], endpoints: [{ip: ${ep}, nodeName: ${node}}]}`;
    step(`Starting the edgemesh server on cloud and an agent on each edge node (${KUBE ? "services from the apiserver" : "services from each agent's static config"})`);
    const mesh = startMesh(lab, {
      binary,
      certificates: true, // identity v2: a mesh CA, a key and certificate per node
      keepDir: true, // its logs are named below, for reading afterwards
      proxy: true,
      dns: { upstreams: [`${h.cloud.ip}:53`] },
      kubernetes: KUBE ? apiUrl : undefined,
      agents: [
        { name: "edge1", host: "edge1", hints: { edge3: [h.edge3.ip] } },
        { name: "edge2", host: "edge2" },
        { name: "edge3", host: "edge3", hints: { edge1: [h.edge1.ip] } },
      ],
      services: KUBE ? [] : [svc(HELLO, h.edge3.ip, "edge3"), svc(WORLD, h.edge2.ip, "edge2")],
    });
    mesh.startServer();
    for (const n of ["edge1", "edge2", "edge3"]) mesh.startAgent(n);
    await mesh.waitReserved(undefined, 30_000);
    info("every agent holds a relay reservation on the server");
    info(`logs: ${mesh.dir}/*.log`);

    // glibc in edge1 asks the agent: `ip netns exec` mounts this file over /etc/resolv.conf
    madeEtcNetns = !existsSync("/etc/netns");
    resolvDir = `/etc/netns/${h.edge1.ns}`;
    mkdirSync(resolvDir, { recursive: true });
    writeFileSync(join(resolvDir, "resolv.conf"), "nameserver 169.254.96.16\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n");
    info("edge1's resolv.conf: nameserver 169.254.96.16 (the agent), search demo.svc.cluster.local svc.cluster.local cluster.local");

    let appliedAt = 0;
    if (KUBE) {
      step("kubectl apply: Services hello and world with their EndpointSlices");
      appliedAt = performance.now();
      for (const [s, ip, node] of [[HELLO, h.edge3.ip, "edge3"], [WORLD, h.edge2.ip, "edge2"]] as const) {
        const r = await kubectl(["apply", "-f", "-"], kubeObjects(s, ip, node));
        info(r.stdout.trim().split("\n").join("; "));
      }
    }

    const get = async (name: string, ip: string) => {
      step(`edge1: curl http://${name}/   (a name the agent resolves to ClusterIP ${ip}; iptables hands the connection to the agent)`);
      const t = performance.now();
      const r = await retryCurl(() => lab.exec("edge1", ["curl", "-sS", "--max-time", "5", `http://${name}/`], { timeoutMs: 10_000 }));
      const sinceApply = appliedAt ? `, ${((performance.now() - appliedAt) / 1000).toFixed(2)} s after kubectl apply` : "";
      info(`${r.ok ? "response" : "FAILED"} in ${(performance.now() - t).toFixed(0)} ms${sinceApply}: ${r.text}`);
      if (!r.ok) throw new Error(`curl http://${name}/ failed: ${r.text}`);
    };
    const path = async (node: string, why: string) => {
      const st = await mesh.status<{ peers: Array<{ nodeName: string; path: string; rttMs: number | null }> }>("edge1");
      const p = st.peers.find((x) => x.nodeName === node);
      info(`edge1 → ${node}: ${p?.path ?? "no connection"}${p?.rttMs != null ? `, RTT ${p.rttMs.toFixed(1)} ms` : ""} (${why})`);
    };
    await get("hello.demo", HELLO.ip);
    await path("edge3", "same LAN: the agents dial each other");
    await get("world.demo", WORLD.ip);
    // the first connection to edge2 goes through the server's relay; the agents
    // then punch a hole through both NATs and move new streams to it
    const punched = await waitDirect(async () => {
      const st = await mesh.status<{ peers: Array<{ nodeName: string; path: string }>; holePunch?: { lastMsToDirect?: number } }>("edge1");
      return { path: st.peers.find((x) => x.nodeName === "edge2")?.path, ms: st.holePunch?.lastMsToDirect };
    });
    if (punched.path === "direct") {
      info(`edge1 → edge2: relayed through the server on cloud at first, then direct: hole punched through both NATs ${punched.ms ?? "?"} ms after the relayed connection opened`);
      await get("world.demo", WORLD.ip);
      await path("edge2", "this request went straight through the punched hole");
    } else {
      await path("edge2", "two NATs apart: the server on cloud relays");
    }

    step("edge1: edgemesh status");
    const st = await lab.exec("edge1", [binary, "status", "--admin", ADMIN], { timeoutMs: 10_000 });
    console.log(indent(st.stdout || st.stderr));
    const sv = await lab.exec("cloud", [binary, "status", "--admin", SERVER_ADMIN], { timeoutMs: 10_000 });
    step("cloud: edgemesh status (the server)");
    console.log(indent(sv.stdout || sv.stderr));

    if (KUBE) {
      step("kubectl delete service world: the name stops resolving and the ClusterIP refuses connections");
      await kubectl(["delete", "-n", "demo", "service", "world"]);
      await kubectl(["delete", "-n", "demo", "endpointslice", "world-1"]);
      const deadline = Date.now() + 5000;
      let dig = "";
      while (Date.now() < deadline) {
        dig = (await lab.exec("edge1", ["getent", "hosts", "world.demo.svc.cluster.local"], { timeoutMs: 5000 })).stdout.trim();
        if (!dig) break;
        await Bun.sleep(100);
      }
      info(`getent hosts world.demo.svc.cluster.local → ${dig || "(not found)"}`);
      const r = await lab.exec("edge1", ["curl", "-sS", "--max-time", "3", `http://${WORLD.ip}/`], { timeoutMs: 10_000 });
      info(`curl http://${WORLD.ip}/ → ${(r.stderr || r.stdout).trim()}`);
    }
    step("Cleaning up: stopping the processes (agents remove their iptables rules), deleting the namespaces");
    void api;
  } finally {
    await cleanup();
  }
}

/** a Service and its EndpointSlice, for kubectl apply */
function kubeObjects(s: { name: string; ip: string }, ip: string, node: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "List",
    items: [
      { apiVersion: "v1", kind: "Service", metadata: { name: s.name, namespace: "demo" }, spec: { clusterIP: s.ip, ports: [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP" }] } },
      {
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: { name: `${s.name}-1`, namespace: "demo", labels: { "kubernetes.io/service-name": s.name } },
        addressType: "IPv4",
        endpoints: [{ addresses: [ip], conditions: { ready: true }, nodeName: node }],
        ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      },
    ],
  });
}

/** polls until the path is direct, at most 3 s */
async function waitDirect(read: () => Promise<{ path?: string; ms?: number }>): Promise<{ path?: string; ms?: number }> {
  let last: { path?: string; ms?: number } = {};
  for (let i = 0; i < 30; i++) {
    last = await read();
    if (last.path === "direct") return last;
    await Bun.sleep(100);
  }
  return last;
}

/** a change may take a moment to reach every agent: a few tries, bounded */
async function retryCurl(run: () => Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<{ ok: boolean; text: string }> {
  let last = { ok: false, text: "" };
  for (let i = 0; i < 20; i++) {
    const r = await run();
    last = { ok: r.code === 0, text: (r.code === 0 ? r.stdout : r.stderr).trim() };
    if (last.ok) return last;
    await Bun.sleep(250);
  }
  return last;
}

// ---------------------------------------------------------------- loopback

async function loopbackDemo(reason: string): Promise<void> {
  step(`Running on loopback (${reason}): no namespaces, no iptables; edge1's SOCKS5 front door stands in for ClusterIP interception`);
  const dir = mkdtempSync(join(tmpdir(), "edgemesh-demo-"));
  writeFileSync(join(dir, "psk"), `${crypto.randomUUID()}${crypto.randomUUID()}\n`, { mode: 0o600 });
  const procs: Array<ReturnType<typeof Bun.spawn>> = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const p of procs) p.kill("SIGTERM");
      await Promise.race([Promise.all(procs.map((p) => p.exited)), Bun.sleep(5000)]);
      for (const p of procs) p.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = () => {
    console.log("\ninterrupted: stopping everything");
    for (const p of procs) p.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const serverPort = freePort();
    const ports = { edge1: freePort(), edge2: freePort(), edge3: freePort() };
    const admin = { edge1: freePort(), edge2: freePort(), edge3: freePort(), server: freePort() };
    const socks = freePort();
    const web = { hello: freePort(), world: freePort() };

    step("Starting the web backends: hello (on edge3) and world (on edge2), both on 127.0.0.1");
    const backend = join(ROOT, "test/fixtures/http-id.ts");
    const start = (argv: string[], log: string) => {
      const p = Bun.spawn(argv, { stdout: Bun.file(join(dir, log)), stderr: Bun.file(join(dir, `${log}.err`)) });
      procs.push(p);
      return p;
    };
    start([process.execPath, backend, "127.0.0.1", String(web.hello), "hello from edge3"], "hello.log");
    start([process.execPath, backend, "127.0.0.1", String(web.world), "world from edge2"], "world.log");

    step("Making a mesh CA and a key and certificate for each node (edgemesh ca init, edgemesh cert issue)");
    caCommand(binary, ["ca", "init", "--dir", join(dir, "ca")]);
    for (const [n, role] of [["cloud", "server"], ["edge1", "agent"], ["edge2", "agent"], ["edge3", "agent"]]) caCommand(binary, ["cert", "issue", "--ca", join(dir, "ca"), "--node", n!, "--role", role!, "--out", join(dir, "certs")]);
    const trust = (n: string) => `trust: {ca: ca/ca.pub, cert: certs/${n}.crt, key: certs/${n}.key, revocationsCache: ${n}.revocations}`;
    step("Starting the edgemesh server and agents edge1, edge2, edge3 (static services, each agent on its own ports)");
    writeFileSync(join(dir, "server.yaml"), `nodeName: cloud\n${trust("cloud")}\npsk: psk\nadminListen: 127.0.0.1:${admin.server}\nserver: {listenPort: ${serverPort}, listenAddresses: [127.0.0.1], advertiseAddresses: [127.0.0.1]}\n`);
    start([binary, "server", "--config", join(dir, "server.yaml")], "server.log");
    const services = [
      `- {name: hello, namespace: demo, clusterIP: ${HELLO.ip}, ports: [{name: http, port: 80, targetPort: ${web.hello}}], endpoints: [{ip: 127.0.0.1, nodeName: edge3}]}`,
      `- {name: world, namespace: demo, clusterIP: ${WORLD.ip}, ports: [{name: http, port: 80, targetPort: ${web.world}}], endpoints: [{ip: 127.0.0.1, nodeName: edge2}]}`,
    ];
    for (const n of ["edge1", "edge2", "edge3"] as const) {
      const others = (["edge1", "edge2", "edge3"] as const).filter((o) => o !== n);
      writeFileSync(
        join(dir, `${n}.yaml`),
        [
          `nodeName: ${n}`,
          trust(n),
          `psk: psk`,
          `adminListen: 127.0.0.1:${admin[n]}`,
          `agent:`,
          `  servers: ["127.0.0.1:${serverPort}"]`,
          `  tunnel: {listenPort: ${ports[n]}, listenAddresses: [127.0.0.1]}`,
          `  metadata:`,
          `    source: static`,
          `    static:`,
          `      nodes: [${others.map((o) => `{name: ${o}, addresses: ["127.0.0.1:${ports[o]}"]}`).join(", ")}]`,
          `      services:`,
          ...services.map((s) => `        ${s}`),
          `  proxy: {enable: false}`,
          `  dns: {enable: false}`,
          `  socks5: {enable: ${n === "edge1"}, listen: "127.0.0.1:${socks}"}`,
          "",
        ].join("\n"),
      );
      start([binary, "agent", "--config", join(dir, `${n}.yaml`)], `${n}.log`);
    }
    const status = async (port: number) => (await fetch(`http://127.0.0.1:${port}/status`)).json() as Promise<{ servers?: Array<{ reservation: boolean }> }>;
    const until = Date.now() + 30_000;
    for (;;) {
      const sts = await Promise.all((["edge1", "edge2", "edge3"] as const).map((n) => status(admin[n]).catch(() => undefined)));
      if (sts.every((s) => s?.servers?.some((x) => x.reservation))) break;
      if (Date.now() > until) throw new Error(`agents did not get reservations within 30 s; logs in ${dir}`);
      await Bun.sleep(200);
    }
    info("every agent holds a relay reservation on the server");

    for (const name of ["hello.demo", "world.demo"]) {
      step(`edge1: GET http://${name}/ through edge1's SOCKS5 front door (curl --socks5-hostname 127.0.0.1:${socks} http://${name}/)`);
      const t = performance.now();
      const text = await socksGet(socks, name, 80);
      info(`response in ${(performance.now() - t).toFixed(0)} ms: ${text.trim()}`);
    }

    step("edge1: edgemesh status");
    const st = Bun.spawnSync([binary, "status", "--admin", `127.0.0.1:${admin.edge1}`]);
    console.log(indent(st.stdout.toString() || st.stderr.toString()));
    step("Cleaning up");
  } finally {
    await cleanup();
  }
}

/** HTTP GET through a SOCKS5 proxy (RFC 1928 CONNECT to a domain name, no auth): the response body */
function socksGet(proxyPort: number, host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port: proxyPort });
    const timer = setTimeout(() => s.destroy(new Error("no response in 10 s")), 10_000);
    let phase = 0;
    let buf = Buffer.alloc(0);
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("connect", () => s.write(Buffer.from([5, 1, 0])));
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (phase === 0 && buf.length >= 2) {
        buf = buf.subarray(2);
        phase = 1;
        const name = Buffer.from(host);
        s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 255])]));
      }
      if (phase === 1 && buf.length >= 10) {
        if (buf[1] !== 0) return s.destroy(new Error(`SOCKS5 reply code ${buf[1]}`));
        buf = buf.subarray(10);
        phase = 2;
        s.write(`GET / HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`);
      }
    });
    s.on("end", () => {
      clearTimeout(timer);
      const text = buf.toString();
      resolve(text.slice(text.indexOf("\r\n\r\n") + 4));
    });
  });
}
