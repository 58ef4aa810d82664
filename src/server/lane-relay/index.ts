// The server's lane relay (server.laneRelay): the pod network's datagram
// lane for agents whose connection to each other runs through this server.
// An agent asks for a grant over its verified connection
// (/edgemesh/lane-relay/1.0.0): a relay id and a random token, with the UDP
// port; it then registers its UDP address with them, and its peer's lane
// datagrams reach it through the relay thread (./worker.ts). The main thread
// only hands out grants; it never touches a datagram.
import type { TunnelNode } from "../../tunnel/node.ts";
import type { Membership } from "../../tunnel/membership.ts";
import type { Logger } from "../../log.ts";
import { closeFd, openUdpSocket } from "../../tunnel/transport/libc-socket.ts";
import { encodeGrant, type RelayGrant } from "../../agent/podnet/lane-codec.ts";
import type { RelayStats, RelayWorkerEvent, RelayWorkerMessage } from "./protocol.ts";

import { LANE_RELAY_PROTOCOL } from "../../agent/podnet/lane-control.ts";

function workerUrl(): string {
  return import.meta.url.startsWith("file:///$bunfs/") ? "./server/lane-relay/worker.ts" : new URL("./worker.ts", import.meta.url).href;
}

export class LaneRelay {
  private worker?: Worker;
  private fd = -1;
  /** node name → its grant (one per node; asked again, the same) */
  private readonly grants = new Map<string, RelayGrant>();
  stats: RelayStats = { registered: 0, forwarded: 0, registrations: 0, drops: {} };
  /** grants the relay thread has not confirmed yet: the agent hears of one only once its registration will be taken */
  private readonly allowed = new Map<number, () => void>();

  constructor(
    readonly port: number,
    private readonly maxGrants: number,
    private readonly log: Logger,
  ) {}

  /** opens the UDP port (throws when it cannot) and serves grants to verified agents */
  async start(node: TunnelNode, membership: Membership): Promise<void> {
    this.fd = openUdpSocket(this.port);
    const w = (this.worker = new Worker(workerUrl()));
    w.onmessage = (e: MessageEvent<RelayWorkerEvent>) => {
      if (e.data.ev === "stats") {
        const { ev: _, ...stats } = e.data;
        this.stats = stats;
      } else if (e.data.ev === "allowed") {
        this.allowed.get(e.data.relayId)?.();
        this.allowed.delete(e.data.relayId);
      }
    };
    w.onerror = (e) => this.log.error("lane relay thread failed: relayed pod network lanes stop", { error: e.message });
    this.post({ op: "start", fd: this.fd });
    await node.handle(
      LANE_RELAY_PROTOCOL,
      (stream, conn) => {
        void membership.waitVerified(conn.remotePeer, 10_000).then(async (claim) => {
          if (claim?.role !== "agent") return stream.abort(new Error("not a verified agent"));
          const g = await this.grantFor(claim.nodeName);
          stream.send(encodeGrant(g));
          void stream.close().catch(() => stream.abort(new Error("closed")));
        });
      },
      { runOnLimitedConnection: false },
    );
    this.log.info("lane relay listening", { udpPort: this.port });
  }

  /** the node's grant (the same while this server runs); the oldest other goes when the table is full */
  private async grantFor(nodeName: string): Promise<RelayGrant> {
    const had = this.grants.get(nodeName);
    if (had) {
      // most recently used last: the eviction below takes the least recently asked
      this.grants.delete(nodeName);
      this.grants.set(nodeName, had);
      return had;
    }
    if (this.grants.size >= this.maxGrants) {
      const [oldest, g] = this.grants.entries().next().value!;
      this.grants.delete(oldest);
      this.post({ op: "revoke", relayId: g.relayId });
    }
    const g: RelayGrant = { port: this.port, relayId: crypto.getRandomValues(new Uint32Array(1))[0]! || 1, token: crypto.getRandomValues(new Uint8Array(16)) };
    this.grants.set(nodeName, g);
    const confirmed = new Promise<void>((resolve) => {
      this.allowed.set(g.relayId, resolve);
      setTimeout(resolve, 1000).unref?.();
    });
    this.post({ op: "allow", relayId: g.relayId, token: g.token });
    await confirmed;
    this.allowed.delete(g.relayId);
    this.log.debug("lane relay grant", { node: nodeName });
    return g;
  }

  private post(m: RelayWorkerMessage): void {
    this.worker?.postMessage(m);
  }

  status(): Record<string, unknown> {
    return { port: this.port, grants: this.grants.size, ...this.stats };
  }

  async stop(): Promise<void> {
    const w = this.worker;
    if (w) {
      this.post({ op: "stop" });
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        w.addEventListener("message", (e: MessageEvent<RelayWorkerEvent>) => {
          if (e.data.ev === "stopped") {
            clearTimeout(t);
            resolve();
          }
        });
      });
      w.terminate();
    }
    if (this.fd >= 0) closeFd(this.fd);
    this.fd = -1;
  }
}
