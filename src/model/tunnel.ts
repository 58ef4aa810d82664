// What the tunnel module offers other modules (via the bus): streams to a
// target as seen from another node.
import type { Stream } from "@libp2p/interface";

export interface ProxyTarget {
  protocol: "tcp" | "udp";
  host: string;
  port: number;
}

/** an opened proxy stream, and payload that arrived with the reply */
export interface TunnelChannel {
  stream: Stream;
  initial: Uint8Array;
}

/**
 * The client's bytes while a backend is being asked: they go out with the
 * request and behind it, before the far agent has answered, so a new
 * connection costs one tunnel round trip. Whatever went to a backend that
 * then refuses is still here for the next one.
 */
export interface EarlyBytes {
  /** everything the client has sent so far */
  read(): Uint8Array | undefined;
  /** bytes the client sends from now on also go to `send`, until the returned stop is called */
  follow(send: (chunk: Uint8Array) => void): () => void;
}

/** a stream of another protocol (e.g. the pod network's) to a node's agent */
export interface NodeStream {
  stream: Stream;
  /** the connection it rides on (compare with `preferredConnection`) */
  connectionId: string;
  path: "direct" | "relayed";
  /** the peer's IPv4 address on a direct connection (as this side sees it: its NAT's, when behind one) */
  remoteIp?: string;
  /** on a relayed connection: the relay's peer ID and IPv4 address */
  relayPeer?: string;
  relayIp?: string;
}

/** what a stream's handler learns about the connection it came on */
export interface StreamOrigin {
  path: "direct" | "relayed";
  /** as NodeStream.remoteIp, relayPeer and relayIp */
  remoteIp?: string;
  relayPeer?: string;
  relayIp?: string;
  /** as NodeStream.connectionId */
  connectionId?: string;
}

export interface TunnelAccess {
  /**
   * opens a proxied stream to `target`, dialled by the agent on node
   * `nodeName`; `early` are the client's bytes, sent with the request and
   * behind it (the far agent writes them to the target once it has dialled it)
   */
  open(nodeName: string, target: ProxyTarget, early?: EarlyBytes): Promise<TunnelChannel>;
  /** a stream of `protocol` to the agent on `nodeName` (dialled if need be), on the connection new streams should take */
  openStream(nodeName: string, protocol: string): Promise<NodeStream>;
  /** the connection new streams to `nodeName` would take now (a direct one once it exists); undefined when none is open or the node is unknown */
  preferredConnection(nodeName: string): string | undefined;
  /** serves `protocol` to verified agents (relayed connections too): the handler gets each stream and the sender's node name, from its certificate */
  handle(protocol: string, handler: (stream: Stream, fromNode: string, origin: StreamOrigin) => void): Promise<void>;
  /** a stream of `protocol` to a server or relay we hold a direct connection to (by peer ID); never dials */
  openRelayStream(relayPeer: string, protocol: string): Promise<Stream>;
  /** tunnel servers (not relay agents) we hold a reservation on, nearest first: peer ID and the IPv4 address we reach them at */
  servers(): Array<{ peer: string; ip: string }>;
}
