// Wires the proxy protocol (src/tunnel/proxy) into the agent's node: serve
// inbound streams from verified members, open outbound ones on a connection.
import type { Connection, Stream } from "@libp2p/interface";
import type { Logger } from "../../log.ts";
import type { TunnelNode } from "../../tunnel/node.ts";
import type { EarlyBytes, TunnelChannel } from "../../model/tunnel.ts";
import { PROXY_PROTOCOL, PROXY_HANDLER_OPTIONS, ProxyServer, openProxyStream, type ProxyRequest } from "../../tunnel/proxy/index.ts";
import type { RejectReason } from "../../tunnel/proxy/server.ts";
import { acceptDirectly, type DirectAcceptStats } from "../../tunnel/proxy/direct-accept.ts";

export { PROXY_PROTOCOL };

export interface ProxyCounters {
  streamsIn: number;
  /** inbound streams refused, by reason */
  refused: Record<RejectReason, number>;
  bytesIn: number;
  bytesOut: number;
  /** inbound streams recognised as proxy streams by their first bytes, and the others (left to libp2p) */
  accepted: DirectAcceptStats;
}

export interface ServeOptions {
  log: Logger;
  authorize(remotePeer: string, fromNode: string): Promise<boolean>;
  /** which targets members may have us dial (target-policy.ts) */
  permit(req: ProxyRequest): string | undefined;
  maxSessions: number;
  maxSessionsPerPeer: number;
  counters: ProxyCounters;
}

export async function serveProxyStreams(node: TunnelNode, o: ServeOptions): Promise<ProxyServer> {
  const server = new ProxyServer({
    log: o.log,
    authorize: o.authorize,
    permit: o.permit,
    maxSessions: o.maxSessions,
    maxSessionsPerPeer: o.maxSessionsPerPeer,
    metrics: {
      onReject: (reason) => void o.counters.refused[reason]++,
      onSessionStart: () => void o.counters.streamsIn++,
      onBytes: (_proto, dir, n) => {
        if (dir === "in") o.counters.bytesIn += n;
        else o.counters.bytesOut += n;
      },
    },
  });
  await node.handle(PROXY_PROTOCOL, server.handler, PROXY_HANDLER_OPTIONS);
  // registered with libp2p above for any opener; ours are taken straight off each new connection
  let warned = false;
  const install = (conn: Connection): void => {
    if (acceptDirectly(conn, PROXY_PROTOCOL, server.handler, o.counters.accepted, server.withFirstBytes) || warned) return;
    warned = true;
    o.log.warn("libp2p internals changed: inbound proxy streams take libp2p's protocol negotiation");
  };
  node.addEventListener("connection:open", (e) => install(e.detail));
  for (const conn of node.getConnections()) install(conn);
  return server;
}

type Muxer = { createStream(): Promise<Stream> };

export async function openProxy(conn: Connection, header: ProxyRequest, timeoutMs = 15_000, early?: EarlyBytes): Promise<TunnelChannel> {
  // A bare muxed stream (libp2p internals, isolated here): the protocol is
  // selected optimistically together with the request, one round trip fewer
  // than conn.newStream's negotiation (tunnel/proxy/optimistic-select.ts).
  const muxer = (conn as unknown as { muxer?: Muxer }).muxer;
  if (muxer?.createStream && conn.status === "open") {
    const stream = await muxer.createStream();
    // what libp2p would record after negotiating; PathUpgrader counts flows by it
    stream.protocol = PROXY_PROTOCOL;
    return openProxyStream(stream, header, { timeoutMs, selectProtocol: PROXY_PROTOCOL, early });
  }
  const stream = await conn.newStream(PROXY_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(timeoutMs) });
  return openProxyStream(stream, header, { timeoutMs, early });
}
