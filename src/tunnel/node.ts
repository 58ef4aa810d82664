// Builds the libp2p node both roles run: TCP, pnet, noise (with our
// OpenSSL-backed crypto), yamux, identify, ping; plus the relay server on the
// server, and on agents the relay transport and our shared-port TCP
// transport (transport/tcp.ts), whose dials can leave from the listening
// port for hole punching (agent/tunnel/hole-punch.ts replaces dcutr).
import { createLibp2p, type Libp2p } from "libp2p";
import { tcp } from "@libp2p/tcp";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { identify } from "@libp2p/identify";
import { ping } from "@libp2p/ping";
import { circuitRelayServer, circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import type { Connection, ConnectionProtector, PrivateKey } from "@libp2p/interface";
import { describeAddr, isCircuit } from "./addresses.ts";
import { skipRepeatedProtocolMerges } from "./stream-fastpath.ts";
import { patchYamuxStreams, flowControlledYamux } from "./yamux-window.ts";
import { windowBudget } from "./flow/budget.ts";
import { decodeWithoutThrowing } from "./frame-decoder.ts";
import { wholeNoiseFrames } from "./noise-frames.ts";
import { getCryptoProvider } from "./crypto/index.ts";
import { libp2pLoggerOption } from "./silent-logger.ts";
import type { ICryptoInterface } from "@chainsafe/libp2p-noise";
import { createPrivateNetwork } from "./privnet/index.ts";
import { sharedPortTcp, TRANSPORT_TAG, type SharedPortTcp } from "./transport/tcp.ts";
import type { Membership } from "./membership.ts";
import type { Multiaddr } from "@multiformats/multiaddr";
import { closeStaleOnReconnect } from "./stale-connections.ts";
import { serveLiveness } from "./liveness.ts";
import { formatFields } from "../log.ts";

export interface TunnelNodeOptions {
  role: "agent" | "server";
  privateKey: PrivateKey;
  secret: Uint8Array;
  userAgent: string;
  listen: string[];
  announce: string[];
  crypto: ICryptoInterface;
  membership: Membership;
  /** false turns off the pnet layer (DESIGN §7: trusted networks only) */
  /** true: privnet v2; "v1": the encrypting v1; false: none */
  privateNetwork?: boolean | "v1";
  /** serve relay reservations (always on a server; on an agent that relays) */
  relay?: { maxReservations: number };
  /** flow control: the config's `flow` section */
  flow?: { maxStreamWindowKiB: number; windowBudgetMiB: number };
  log?: (level: "info" | "warn", msg: string) => void;
  /** addresses never to dial (e.g. inside pod CIDRs, which the pod network carries over this very tunnel) */
  denyDial?: (ma: Multiaddr) => boolean;
  /** a connection failed the mesh-secret check: the remote as "host:port" */
  onSecretMismatch?: (remote: string, direction: "inbound" | "outbound") => void;
}

export type TunnelNode = Libp2p<Record<string, unknown>>;

/** streams one tunnel connection may carry at once, each way */
export const MAX_STREAMS_PER_CONNECTION = 65_536;

/**
 * Protects TCP connections only. A relayed connection runs inside two
 * connections that are already protected (agent↔server), and the server
 * relays only between verified members, so protecting it again would only
 * spend CPU at both ends (a third of relayed throughput, measured).
 */
function outerOnly(factory: (c?: unknown) => ConnectionProtector): (c?: unknown) => ConnectionProtector {
  return (components) => {
    const inner = factory(components);
    return {
      protect: (conn, options) => {
        // the upgrader hands us the MultiaddrConnection, which has remoteAddr
        const addr = (conn as { remoteAddr?: Parameters<typeof isCircuit>[0] }).remoteAddr;
        return addr && isCircuit(addr) ? Promise.resolve(conn) : inner.protect(conn, options);
      },
    } as ConnectionProtector;
  };
}

export async function createTunnelNode(o: TunnelNodeOptions): Promise<TunnelNode> {
  const services: Record<string, any> = {
    identify: identify({ runOnLimitedConnection: true }),
    ping: ping({ runOnLimitedConnection: true }),
  };
  // servers, and agents that relay for others (agent.tunnel.relay)
  if (o.role === "server" || o.relay) {
    services.relay = circuitRelayServer({
      // our own caps replace the default 2 min / 128 KiB limits: a relayed
      // link must carry a whole transfer (DESIGN §7)
      reservations: { maxReservations: o.relay?.maxReservations ?? 1024, applyDefaultLimit: false },
      maxInboundHopStreams: 4096,
      maxOutboundStopStreams: 4096,
    });
  }
  if (o.flow) windowBudget.limit = o.flow.windowBudgetMiB * 1024 * 1024;
  const encrypter = noise({ crypto: o.crypto });
  const node = await createLibp2p({
    ...libp2pLoggerOption(),
    privateKey: o.privateKey,
    start: false,
    nodeInfo: { userAgent: o.userAgent },
    addresses: { listen: o.listen, announce: o.announce },
    transports:
      o.role === "agent"
        ? [sharedPortTcp({ log: o.log }), circuitRelayTransport({ reservationCompletionTimeout: 10_000 })]
        : [tcp({ outboundSocketInactivityTimeout: 0, inboundSocketInactivityTimeout: 0 })],
    connectionEncrypters: [getCryptoProvider(o.crypto) === "openssl" ? wholeNoiseFrames(encrypter) : encrypter],
    // yamux's default of 1,000 streams per connection caps an agent pair at
    // 1,000 concurrent proxied connections (upstream EdgeMesh reset or hung
    // beyond its limit); members are authenticated, so the cap is only a
    // guard against runaway peers.
    streamMuxers: [
      flowControlledYamux(yamux({
        maxInboundStreams: MAX_STREAMS_PER_CONNECTION,
        maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
        streamOptions: { maxStreamWindowSize: (o.flow?.maxStreamWindowKiB ?? 4096) * 1024 },
      }) as never) as never,
    ],
    // our ChaCha20 private network (src/tunnel/privnet): same purpose as
    // @libp2p/pnet at a fraction of its cost; 5 s for its nonce exchange
    // leaves room for slow edge links
    connectionProtector:
      o.privateNetwork === false
        ? undefined
        : outerOnly(
            createPrivateNetwork(o.secret, {
              version: o.privateNetwork === "v1" ? 1 : 2,
              log: o.log,
              handshakeTimeoutMs: 5000,
              // a connection we accept proves the secret within about a second
              // or goes, and one source holds at most 32 of the handshake slots
              inboundHandshakeTimeoutMs: 1000,
              maxPendingPerSource: 32,
              onKeyMismatch: o.onSecretMismatch && ((addr, direction) => o.onSecretMismatch!(describeAddr(addr), direction)),
            }),
          ),
    connectionGater: { ...o.membership.gater(), denyDialMultiaddr: async (ma: Multiaddr) => o.denyDial?.(ma) ?? false },
    // handshake slots for a real mesh (libp2p's default is 10, which one
    // outsider reopening idle connections keeps full); each source may open 20
    // per second (default 5: agents behind one NAT share an address)
    connectionManager: { maxConnections: 4096, dialTimeout: 10_000, maxIncomingPendingConnections: 256, inboundConnectionThreshold: 20, inboundUpgradeTimeout: 10_000 },
    connectionMonitor: { pingInterval: 10_000, abortConnectionOnPingFailure: true },
    services,
  });
  node.addEventListener("peer:identify", (evt) => {
    void o.membership.onIdentify(evt.detail as never);
  });
  o.membership.countConnections = (peer) => node.getConnections(peer).length;
  await serveLiveness(node as TunnelNode);
  // a peer back before its old connection timed out: the relay would use the dead one
  closeStaleOnReconnect(node as TunnelNode, (msg, fields) => o.log?.("info", msg + formatFields(fields)));
  if (!skipRepeatedProtocolMerges(node as TunnelNode)) o.log?.("warn", "libp2p internals changed: every stream pays a peer store write");
  if (!patchYamuxStreams()) o.log?.("warn", "yamux internals changed: stock window updates, frames and windows (up to 16 MiB per stream, no budget)");
  if (!decodeWithoutThrowing()) o.log?.("warn", "libp2p internals changed: noise frames are decoded the stock way");
  return node as TunnelNode;
}

/**
 * Dials one address at once, beside any dial to the same peer already in
 * libp2p's queue. node.dial would add the address to that queued dial, which
 * tries its addresses one after another: a relayed address then waited for
 * direct addresses that time out (6 s each; measured: a relayed path back
 * 5.2 s after its server instead of at once). The connection is the
 * upgrader's, registered with the connection manager like any other.
 */
export function dialNow(node: TunnelNode, ma: Multiaddr, signal: AbortSignal): Promise<Connection> {
  return transportManager(node).dial(ma, { signal });
}

/** the agent's shared-port TCP transport */
export function sharedPortTransport(node: TunnelNode): SharedPortTcp | undefined {
  return libp2pTransport(node, TRANSPORT_TAG) as SharedPortTcp | undefined;
}

/** the node's transport whose tag (Symbol.toStringTag) is `tag` */
export function libp2pTransport(node: TunnelNode, tag: string): Record<PropertyKey, unknown> | undefined {
  return transportManager(node).getTransports().find((t) => t[Symbol.toStringTag] === tag);
}

/** libp2p's transport manager (not public API; isolated here) */
function transportManager(node: TunnelNode): {
  dial(ma: Multiaddr, o: { signal: AbortSignal }): Promise<Connection>;
  getTransports(): Array<Record<PropertyKey, unknown>>;
} {
  return (node as unknown as { components: { transportManager: ReturnType<typeof transportManager> } }).components.transportManager;
}

