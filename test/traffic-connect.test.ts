// The client's first bytes travel with the tunnel request (no wait for the
// far agent's reply), and a backend that fails does not lose them: the next
// one gets exactly the same bytes; a local backend gets them as soon as it is
// connected.
import { expect, test } from "bun:test";
import { createServer, type AddressInfo } from "node:net";
import { connectBackend } from "../src/agent/traffic/connect.ts";
import { RoundRobin } from "../src/agent/traffic/policy.ts";
import type { Endpoint, Service } from "../src/model/index.ts";
import type { ProxyTarget, TunnelAccess } from "../src/model/tunnel.ts";
import { endpoint, service } from "./util/service.ts";

const svc = (endpoints: Endpoint[], targetPort = 8080): Service => service({ endpoints, ports: [{ name: "", port: 80, protocol: "TCP", targetPort }] });
const ep = (ip: string, nodeName: string): Endpoint => endpoint(ip, nodeName);

test("tunnel: the first backend refuses, the second gets the same early bytes; they are read once", async () => {
  const opens: Array<{ node: string; target: ProxyTarget; early?: string }> = [];
  const tunnel: TunnelAccess = {
    open: async (node, target, early) => {
      opens.push({ node, target, early: early && new TextDecoder().decode(early) });
      if (opens.length === 1) throw new Error("connect ECONNREFUSED");
      return { stream: {} as never, initial: new Uint8Array(0) };
    },
  };
  let reads = 0;
  const early = () => (reads++, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  let cached: Uint8Array | undefined;
  const up = await connectBackend(svc([ep("10.1.0.1", "edge2"), ep("10.1.0.2", "edge3")]), svc([]).ports[0]!, new RoundRobin(), "10.0.0.9", {
    nodeName: "edge1",
    tunnel,
    early: () => (cached ??= early()),
  });
  expect(up.kind).toBe("tunnel");
  expect(opens.map((o) => [o.node, o.target.host, o.early])).toEqual([
    ["edge2", "10.1.0.1", "GET / HTTP/1.1\r\n\r\n"],
    ["edge3", "10.1.0.2", "GET / HTTP/1.1\r\n\r\n"],
  ]);
  expect(reads).toBe(1);
});

test("a local backend receives the early bytes first, before anything piped later", async () => {
  const got: Buffer[] = [];
  const srv = createServer((s) => s.on("data", (d: Buffer) => got.push(d)));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  try {
    const up = await connectBackend(svc([ep("127.0.0.1", "edge1")], port), svc([], port).ports[0]!, new RoundRobin(), "10.0.0.9", {
      nodeName: "edge1",
      early: () => new TextEncoder().encode("hello "),
    });
    if (up.kind !== "socket") throw new Error("expected a direct socket");
    up.socket.write("world");
    const deadline = Date.now() + 5000;
    while (Buffer.concat(got).toString() !== "hello world" && Date.now() < deadline) await Bun.sleep(10);
    expect(Buffer.concat(got).toString()).toBe("hello world");
    up.socket.destroy();
  } finally {
    srv.close();
  }
});
