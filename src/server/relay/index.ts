// The tunnel server: a libp2p node that gives verified agents relay
// reservations, relays their connections without time or byte limits, and
// tells them the address it observes them at (identify), which DCUtR needs.
import { peerIdFromString } from "@libp2p/peer-id";
import type { ModuleContext, ModuleFactory, Module } from "../../agent/module.ts";
import { Identities } from "../../tunnel/identity.ts";
import { Membership } from "../../tunnel/membership.ts";
import { installCertIdentity, type CertIdentity } from "../../tunnel/cert-identity.ts";
import { createTunnelNode, type TunnelNode } from "../../tunnel/node.ts";
import { createNoiseCrypto } from "../../tunnel/crypto/index.ts";
import { formatAgentVersion } from "../../tunnel/agent-version.ts";
import { installCrashGuard } from "../../tunnel/crash-guard.ts";
import { tcpAddr, describeAddr, isCircuit } from "../../tunnel/addresses.ts";
import { VERSION } from "../../version.ts";
import { relayForOthers, relayReservations } from "../../tunnel/relay-service.ts";
import { SecretMismatches } from "../../tunnel/secret-mismatch.ts";
import { collectFlowMetrics, windowBudget } from "../../tunnel/flow/budget.ts";
import { pacerCounters } from "../../tunnel/flow/gc-pacer.ts";
import { LaneRelay } from "../lane-relay/index.ts";

const FULL_CHECK_MS = 2_000;

export const relayModule: ModuleFactory = {
  name: "relay",
  enabled: () => true,
  readyOnStart: true,
  create: (ctx) => new Relay(ctx),
};

class Relay implements Module {
  readonly name = "relay";
  private node?: TunnelNode;
  private membership?: Membership;
  private certs?: CertIdentity;
  private laneRelay?: LaneRelay;
  private readonly relayed = { connections: 0, bytes: 0, active: 0, pauses: 0, refused: 0 };

  constructor(private readonly ctx: ModuleContext) {}

  async start(): Promise<void> {
    const { config, log, metrics } = this.ctx;
    installCrashGuard(log);
    const ids = new Identities(config.pskSecret);
    const identity = config.identity;
    const membership = new Membership(ids, log, identity !== undefined);
    membership.maxConnectionsPerPeer = config.server.maxConnectionsPerPeer;
    this.membership = membership;
    const crypto = createNoiseCrypto((level, msg) => log[level](msg));
    const secretMismatches = new SecretMismatches(log);
    const s = config.server;
    this.node = await createTunnelNode({
      role: "server",
      privateKey: identity?.key ?? (await ids.key(s.name)),
      secret: config.pskSecret,
      userAgent: formatAgentVersion(VERSION, { role: "server", nodeName: identity?.cert.nodeName ?? s.name }),
      listen: s.listenAddresses.map((a) => tcpAddr(a, s.listenPort).toString()),
      announce: s.advertiseAddresses.map((a) => tcpAddr(a, s.listenPort).toString()),
      crypto: crypto.crypto,
      membership,
      log: (level, msg) => log[level](msg),
      relay: { maxReservations: s.maxReservations },
      privateNetwork: s.privateNetwork,
      flow: config.flow,
      onSecretMismatch: (remote, direction) => secretMismatches.record(remote, direction),
    });
    const node = this.node;
    relayForOthers(node, this.relayed, {
      maxPerPeer: config.server.maxRelayedConnectionsPerPeer,
      maxPerPeerField: "server.maxRelayedConnectionsPerPeer",
      maxStreamWindowBytes: config.flow.maxStreamWindowKiB * 1024,
      log,
      collect: (n, h, t, r) => metrics.collect(n, h, t, r),
    });
    // identity v2: certificates on every connection; agents look names up here
    if (identity) {
      this.certs = await installCertIdentity(this.node, identity, membership, log, {
        ...(config.revocationsPath ? { revocationsFile: config.revocationsPath } : {}),
        // a revoked node's reservation goes with it (libp2p would keep it until it expires)
        onRevoked: (peer) => void relayReservations(node)?.delete(peerIdFromString(peer)),
      });
    }
    await this.node.start();
    if (s.laneRelay.enable) {
      const lr = new LaneRelay(s.laneRelay.port, s.maxReservations, log);
      try {
        await lr.start(node, membership);
        this.laneRelay = lr;
        metrics.collect("lane_relay_forwarded_total", "Pod network lane datagrams forwarded between agents.", "counter", () => [{ value: lr.stats.forwarded }]);
        metrics.collect("lane_relay_dropped_total", "Lane relay datagrams dropped, by reason (malformed, registration: bad id or token, unregistered: from an address no agent registered, unknown: to a relay id without an address, send).", "counter", () =>
          Object.entries(lr.stats.drops).map(([reason, value]) => ({ labels: { reason }, value })),
        );
      } catch (err) {
        await lr.stop();
        log.warn("lane relay off: relayed pod network traffic takes the tunnel streams", { error: (err as Error).message });
      }
    }
    log.info("tunnel server listening", {
      peerId: this.node.peerId.toString(),
      addresses: this.node.getMultiaddrs().map(describeAddr).join(","),
      name: s.name,
    });
    collectFlowMetrics((n, h, t, r) => metrics.collect(n, h, t, r));
    metrics.collect("identity_certificate_expiry_seconds", "Seconds until this node's certificate expires (identity v2).", "gauge", () =>
      config.identity ? [{ value: Math.round(config.identity.cert.notAfter - Date.now() / 1000) }] : [],
    );
    metrics.collect("peers_connected", "Peers with an open connection.", "gauge", () => [{ value: node.getPeers().length }]);
    // libp2p refuses reservations beyond the cap without a word on this side;
    // the agents only see RESERVATION_REFUSED. Say it here, once per episode.
    let full = false;
    this.fullCheck = setInterval(() => {
      const held = this.reservations().length;
      if (!full && held >= s.maxReservations) log.warn("reservation table full: new agents are refused until one leaves; raise server.maxReservations", { held, max: s.maxReservations });
      else if (full && held < s.maxReservations) log.info("reservation table has room again", { held, max: s.maxReservations });
      full = held >= s.maxReservations;
    }, FULL_CHECK_MS);
  }

  private fullCheck?: ReturnType<typeof setInterval>;

  private reservations(): Array<{ nodeName: string; peerId: string; expires: string; address: string }> {
    const table = this.node && relayReservations(this.node);
    if (!table || !this.node) return [];
    const out: Array<{ nodeName: string; peerId: string; expires: string; address: string }> = [];
    for (const [peer, r] of table) {
      const id = String(peer);
      const pid = peerIdFromString(id);
      const conn = this.node.getConnections(pid).find((c) => !isCircuit(c.remoteAddr));
      out.push({
        nodeName: this.membership?.claim(pid)?.nodeName ?? "",
        peerId: id,
        expires: r.expiry.toISOString(),
        address: conn ? describeAddr(conn.remoteAddr) : "",
      });
    }
    return out;
  }

  status(): Record<string, unknown> {
    const node = this.node;
    if (!node) return {};
    return {
      peerId: node.peerId.toString(),
      listenAddresses: node.getMultiaddrs().map(String),
      reservations: this.reservations(),
      identity: this.certs?.status() ?? { version: 1 },
      relayed: { ...this.relayed },
      laneRelay: this.laneRelay?.status() ?? null,
      flow: { ...windowBudget.counters(), ...pacerCounters() },
      peers: node.getPeers().map((p) => {
        const conns = node.getConnections(p);
        const rtt = conns.map((c) => c.rtt).find((r) => typeof r === "number");
        return {
          nodeName: this.membership?.claim(p)?.nodeName ?? "",
          peerId: p.toString(),
          path: conns.some((c) => !isCircuit(c.remoteAddr)) ? "direct" : "relayed",
          rttMs: rtt ?? null,
        };
      }),
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.fullCheck);
    await this.laneRelay?.stop();
    this.certs?.stop();
    await this.node?.stop();
  }
}
