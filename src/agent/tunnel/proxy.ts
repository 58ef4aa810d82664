// Wires the proxy protocol (src/tunnel/proxy) into the agent's node: serve
// inbound streams from verified members, open outbound ones on a connection.
import type { Connection } from "@libp2p/interface";
import type { Logger } from "../../log.ts";
import type { TunnelNode } from "../../tunnel/node.ts";
import type { TunnelChannel } from "../../model/tunnel.ts";
import { PROXY_PROTOCOL, PROXY_HANDLER_OPTIONS, ProxyServer, openProxyStream, type ProxyRequest } from "../../tunnel/proxy/index.ts";

export { PROXY_PROTOCOL };

export interface ProxyCounters {
  streamsIn: number;
  bytesIn: number;
  bytesOut: number;
}

export interface ServeOptions {
  log: Logger;
  authorize(remotePeer: string, fromNode: string): Promise<boolean>;
  counters: ProxyCounters;
}

export async function serveProxyStreams(node: TunnelNode, o: ServeOptions): Promise<ProxyServer> {
  const server = new ProxyServer({
    log: o.log,
    authorize: o.authorize,
    metrics: {
      onSessionStart: () => void o.counters.streamsIn++,
      onBytes: (_proto, dir, n) => {
        if (dir === "in") o.counters.bytesIn += n;
        else o.counters.bytesOut += n;
      },
    },
  });
  await node.handle(PROXY_PROTOCOL, server.handler, PROXY_HANDLER_OPTIONS);
  return server;
}

export async function openProxy(conn: Connection, header: ProxyRequest, timeoutMs = 15_000): Promise<TunnelChannel> {
  const stream = await conn.newStream(PROXY_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(timeoutMs) });
  return openProxyStream(stream, header, { timeoutMs });
}
