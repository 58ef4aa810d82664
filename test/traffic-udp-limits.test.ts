// UDP sessions are bounded per client address and per service port: a LAN
// neighbour that forges source addresses or ports cannot make the agent hold
// a socket per datagram. Real sockets on loopback.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createSocket, type Socket } from "node:dgram";
import { UdpForwarder } from "../src/agent/traffic/udp.ts";
import { RoundRobin } from "../src/agent/traffic/policy.ts";
import { createLogger } from "../src/log.ts";
import type { Service } from "../src/model/index.ts";

let echo: Socket;
let echoPort = 0;
beforeAll(async () => {
  echo = createSocket("udp4");
  echo.on("message", (m, r) => echo.send(m, r.port, r.address));
  await new Promise<void>((r) => echo.bind(0, "127.0.0.1", r));
  echoPort = echo.address().port;
});
afterAll(() => echo.close());

const service = (): Service => ({
  namespace: "demo",
  name: "dns",
  type: "ClusterIP",
  clusterIPs: ["10.96.0.53"],
  headless: false,
  externalName: "",
  ports: [{ name: "dns", port: 53, protocol: "UDP", targetPort: echoPort }],
  endpoints: [{ ip: "127.0.0.1", nodeName: "", ready: true, hostname: "", ports: [] }],
  sessionAffinity: "None",
  sessionAffinityTimeoutSeconds: 10800,
  lbPolicy: "RoundRobin",
});

async function client(): Promise<Socket> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
  return s;
}

test("past udpSessionsPerClient a client's new source ports get nothing and are counted; its open sessions and other bounds hold", async () => {
  const listener = createSocket("udp4");
  await new Promise<void>((r) => listener.bind(0, "127.0.0.1", r));
  const refused: string[] = [];
  const svc = service();
  const policy = new RoundRobin();
  const fwd = new UdpForwarder(listener, {
    service: () => svc,
    port: svc.ports[0]!,
    policy: () => policy,
    nodeName: "edge1",
    tunnel: () => undefined,
    log: createLogger("traffic", "error"),
    maxPerClient: 3,
    maxSessions: 100,
    onRefused: (why) => void refused.push(why),
  });
  const clients = await Promise.all(Array.from({ length: 5 }, client));
  try {
    const answers = clients.map((c, i) => {
      const got: string[] = [];
      c.on("message", (m) => got.push(m.toString()));
      return { c, got, i };
    });
    for (const a of answers) {
      a.c.send(`hello ${a.i}`, listener.address().port, "127.0.0.1");
      await Bun.sleep(30);
    }
    await Bun.sleep(300);
    expect(fwd.active).toBe(3);
    expect(answers.map((a) => a.got.length)).toEqual([1, 1, 1, 0, 0]);
    expect(refused).toEqual(["client", "client"]);
    // an open session keeps working
    answers[0]!.c.send("again", listener.address().port, "127.0.0.1");
    await Bun.sleep(200);
    expect(answers[0]!.got).toEqual(["hello 0", "again"]);
  } finally {
    for (const c of clients) c.close();
    fwd.close();
  }
});
