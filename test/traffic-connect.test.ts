// The client's bytes travel with the tunnel request and behind it, without
// waiting for the far agent's reply, and a backend that fails does not lose
// them: the next one gets exactly the same bytes from the start; a local
// backend gets them as soon as it is connected.
import { afterEach, expect, test } from "bun:test";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { connectBackend } from "../src/agent/traffic/connect.ts";
import { ClientPrefix, MAX_PREFIX_BYTES } from "../src/agent/traffic/client-prefix.ts";
import { RoundRobin } from "../src/agent/traffic/policy.ts";
import { pipeSockets } from "../src/tunnel/proxy/socket-pipe.ts";
import type { Endpoint, Service } from "../src/model/index.ts";
import type { TunnelAccess } from "../src/model/tunnel.ts";

/** the proxy path is all these tests use */
const NO_OTHER_STREAMS = { openStream: () => Promise.reject(new Error("not in this test")), preferredConnection: () => undefined,
      openRelayStream: () => Promise.reject(new Error("no relay")), servers: () => [], handle: async () => {} };
import { endpoint, service } from "./util/service.ts";

const svc = (endpoints: Endpoint[], targetPort = 8080): Service => service({ endpoints, ports: [{ name: "", port: 80, protocol: "TCP", targetPort }] });
const ep = (ip: string, nodeName: string): Endpoint => endpoint(ip, nodeName);
const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : "");

const servers: Server[] = [];
const sockets: Array<{ destroy(): void }> = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

async function listen(onConn: (s: Socket) => void): Promise<number> {
  const srv = createServer({ allowHalfOpen: true }, onConn);
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return (srv.address() as AddressInfo).port;
}

/** an accepted socket (the agent's side) and the client that connected to it */
async function clientPair(): Promise<{ accepted: Socket; client: Socket }> {
  let accepted!: (s: Socket) => void;
  const got = new Promise<Socket>((r) => (accepted = r));
  const port = await listen((s) => accepted(s));
  const client = connect(port, "127.0.0.1");
  sockets.push(client);
  const a = await got;
  sockets.push(a);
  return { accepted: a, client };
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await Bun.sleep(5);
  if (!cond()) throw new Error("condition not met in time");
}

test("tunnel: bytes sent while the first backend is asked go behind the request; when it refuses, the second gets all of them", async () => {
  const { accepted, client } = await clientPair();
  const prefix = new ClientPrefix(accepted);
  client.write("GET / HTTP/1.1\r\n");
  await until(() => prefix.byteLength === 16);
  const opens: Array<{ node: string; sent: string[] }> = [];
  const tunnel: TunnelAccess = {
    ...NO_OTHER_STREAMS,
    open: async (node, _target, early) => {
      const sent = [text(early?.read())];
      opens.push({ node, sent });
      const stop = early!.follow((c) => sent.push(text(c)));
      try {
        if (opens.length === 1) {
          // the client goes on writing before this backend answers
          client.write("Host: a\r\n\r\n");
          await until(() => sent.length === 2);
          throw new Error("connect ECONNREFUSED");
        }
        return { stream: {} as never, initial: new Uint8Array(0) };
      } finally {
        stop();
      }
    },
  };
  const up = await connectBackend(svc([ep("10.1.0.1", "edge2"), ep("10.1.0.2", "edge3")]), svc([]).ports[0]!, new RoundRobin(), "10.0.0.9", { nodeName: "edge1", tunnel, early: prefix });
  expect(up.kind).toBe("tunnel");
  expect(opens).toEqual([
    { node: "edge2", sent: ["GET / HTTP/1.1\r\n", "Host: a\r\n\r\n"] },
    { node: "edge3", sent: ["GET / HTTP/1.1\r\nHost: a\r\n\r\n"] },
  ]);
  // bytes that come after the reply, before the pipe takes over, are handed to the pipe
  client.write("more");
  await until(() => prefix.byteLength === 31);
  expect(text(prefix.release())).toBe("more");
});

test("a local backend receives the client's bytes first, then those sent while it connected, then the piped ones", async () => {
  const got: Buffer[] = [];
  const port = await listen((s) => s.on("data", (d: Buffer) => got.push(d)));
  const { accepted, client } = await clientPair();
  const prefix = new ClientPrefix(accepted);
  client.write("hello ");
  await until(() => prefix.byteLength === 6);
  const up = await connectBackend(svc([ep("127.0.0.1", "edge1")], port), svc([], port).ports[0]!, new RoundRobin(), "10.0.0.9", { nodeName: "edge1", early: prefix });
  if (up.kind !== "socket") throw new Error("expected a direct socket");
  sockets.push(up.socket);
  client.write("big ");
  await until(() => prefix.byteLength === 10);
  expect(prefix.release()).toBeUndefined(); // already written to the backend
  up.socket.write(Buffer.from("world"));
  await until(() => Buffer.concat(got).toString() === "hello big world");
});

test("the prefix is bounded: past 64 KiB the client is paused until a backend takes it", async () => {
  const { accepted, client } = await clientPair();
  const prefix = new ClientPrefix(accepted);
  const chunk = Buffer.alloc(16 * 1024, 1);
  for (let i = 0; i < 64; i++) client.write(chunk); // 1 MiB offered
  await until(() => prefix.byteLength >= MAX_PREFIX_BYTES);
  await Bun.sleep(100);
  expect(prefix.byteLength).toBeLessThan(MAX_PREFIX_BYTES + 256 * 1024);
  expect(accepted.isPaused()).toBe(true);
});

test("local backend: a client that sent its request and EOF while the backend was dialled still gets the whole reply", async () => {
  // the backend answers only after EOF, like an HTTP/1.0 upload or `nc -N`
  const port = await listen((s) => {
    let n = 0;
    s.on("data", (d: Buffer) => (n += d.length));
    s.on("end", () => s.end(`got ${n} bytes`));
  });
  const { accepted, client } = await clientPair();
  const prefix = new ClientPrefix(accepted);
  let reply = "";
  client.on("data", (d: Buffer) => (reply += d.toString()));
  const clientEnded = new Promise<void>((r) => client.on("end", () => r()));
  client.end("twelve bytes");
  await until(() => accepted.readableEnded);
  const up = await connectBackend(svc([ep("127.0.0.1", "edge1")], port), svc([], port).ports[0]!, new RoundRobin(), "10.0.0.9", { nodeName: "edge1", early: prefix });
  if (up.kind !== "socket") throw new Error("expected a direct socket");
  sockets.push(up.socket);
  prefix.release();
  void pipeSockets(accepted, up.socket);
  await clientEnded;
  expect(reply).toBe("got 12 bytes");
});

test("a tunnel open that answers after its timeout is aborted, not left open; the next backend serves", async () => {
  const aborted: string[] = [];
  const channel = (name: string) => ({ stream: { abort: (e: Error) => void aborted.push(`${name}: ${e.message}`) } as never, initial: new Uint8Array(0) });
  let opens = 0;
  const tunnel: TunnelAccess = {
    ...NO_OTHER_STREAMS,
    open: async (node) => {
      opens++;
      if (node === "edge2") {
        await Bun.sleep(150); // longer than the per-open timeout below
        return channel("late");
      }
      return channel("second");
    },
  };
  const up = await connectBackend(svc([ep("10.1.0.1", "edge2"), ep("10.1.0.2", "edge3")]), svc([]).ports[0]!, new RoundRobin(), "10.0.0.9", { nodeName: "edge1", tunnel, tunnelOpenTimeoutMs: 50 });
  expect(up.kind === "tunnel" && up.endpoint.nodeName).toBe("edge3");
  expect(opens).toBe(2);
  await until(() => aborted.length === 1);
  expect(aborted).toEqual(["late: tunnel open answered after its timeout"]);
});
