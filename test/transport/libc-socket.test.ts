// The libc layer that lets a dial leave from the port we listen on: struct
// layouts and constants pinned for Linux x86-64/arm64, and on loopback a
// connect from a port another listener holds (SO_REUSEPORT), handed to Bun
// as a working socket; the same 4-tuple twice is EADDRINUSE, which callers
// fall back from.
import { describe, expect, test } from "bun:test";
import net from "node:net";
import { closeFd, connectFromPort, LINUX, reusePortDialSupport, sockaddrIn, sockaddrIn6, SocketError } from "../../src/tunnel/transport/libc-socket.ts";

describe("layouts", () => {
  test("sockaddr_in: family little-endian, port and address in network order, 16 bytes", () => {
    expect([...sockaddrIn("192.0.2.10", 20006)]).toEqual([2, 0, 0x4e, 0x26, 192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
  });
  test("sockaddr_in6: 28 bytes, address at offset 8", () => {
    const b = sockaddrIn6("fd00::1:2", 443);
    expect(b.byteLength).toBe(28);
    expect([...b.subarray(0, 4)]).toEqual([10, 0, 0x01, 0xbb]);
    expect([...b.subarray(8, 24)]).toEqual([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
  });
  test("asm-generic constants shared by x86-64 and arm64", () => {
    expect(LINUX).toMatchObject({ SOL_SOCKET: 1, SO_REUSEADDR: 2, SO_ERROR: 4, SO_REUSEPORT: 15, SOCK_NONBLOCK: 0o4000, EINPROGRESS: 115, EADDRINUSE: 98 });
  });
});

describe.skipIf(!reusePortDialSupport().available)("dialling from a port we listen on", () => {
  function listen(port = 0): Promise<net.Server & { port: number; peers: string[] }> {
    return new Promise((resolve) => {
      const peers: string[] = [];
      const srv = net.createServer((s) => {
        peers.push(`${s.remoteAddress}:${s.remotePort}`);
        s.on("data", (d: Buffer) => s.write(Buffer.concat([Buffer.from("echo:"), d])));
        s.on("error", () => {});
      });
      srv.listen({ host: "127.0.0.1", port, reusePort: true } as net.ListenOptions, () => resolve(Object.assign(srv, { port: (srv.address() as net.AddressInfo).port, peers })));
    });
  }

  test("connects from our listening port, and Bun drives the descriptor as a socket", async () => {
    const ours = await listen(); // our "tunnel port"
    const remote = await listen();
    try {
      const fd = await connectFromPort({ host: "127.0.0.1", port: remote.port, localPort: ours.port });
      const sock = net.connect({ fd } as net.NetConnectOpts);
      const reply = await new Promise<string>((resolve, reject) => {
        sock.on("error", reject);
        sock.on("data", (d) => resolve(d.toString()));
        sock.write("hi");
      });
      expect(reply).toBe("echo:hi");
      expect(remote.peers).toEqual([`127.0.0.1:${ours.port}`]);
      sock.destroy();
    } finally {
      ours.close();
      remote.close();
    }
  });

  test("the same 4-tuple while the first is open: EADDRINUSE or EADDRNOTAVAIL; a closed port: ECONNREFUSED", async () => {
    const ours = await listen();
    const remote = await listen();
    try {
      const fd = await connectFromPort({ host: "127.0.0.1", port: remote.port, localPort: ours.port });
      const err = await connectFromPort({ host: "127.0.0.1", port: remote.port, localPort: ours.port }).catch((e) => e);
      expect(err).toBeInstanceOf(SocketError);
      expect(["EADDRINUSE", "EADDRNOTAVAIL"]).toContain((err as SocketError).code);
      closeFd(fd);
      const closed = await listen();
      const closedPort = closed.port;
      await new Promise((r) => closed.close(r));
      const refused = await connectFromPort({ host: "127.0.0.1", port: closedPort, localPort: ours.port }).catch((e) => e);
      expect((refused as SocketError).code).toBe("ECONNREFUSED");
    } finally {
      ours.close();
      remote.close();
    }
  });
});
