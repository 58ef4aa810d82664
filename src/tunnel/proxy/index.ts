/** The proxy protocol `/edgemesh/proxy/1.0.0`: public surface. */
export { MAX_REPLY_BYTES, MAX_REQUEST_BYTES, ProxyHeaderError, encodeReply, encodeRequest, replyDecoder, requestDecoder, validateReply, validateRequest } from './header.ts';
export type { Decoded, HeaderDecoder, ProxyReply, ProxyRequest, ProxyTransport } from './header.ts';
export { DatagramDecoder, MAX_DATAGRAM_BYTES, encodeDatagram } from './datagram.ts';
export { PAUSED_READ_BUFFER_BYTES, pipeSocketStream, resetSocket } from './pipe.ts';
export type { ByteDirection, PipeOptions, PipeResult } from './pipe.ts';
export { DialError, dialFailure, dialTcp, formatHostPort, openUdp } from './dial.ts';
export type { Target } from './dial.ts';
export { HeaderTimeoutError, StreamEndedError } from './read-header.ts';
export { UDP_CLOSE_GRACE_MS, UdpSession } from './udp-session.ts';
export type { UdpCloseReason, UdpSessionOptions, UdpSessionStats } from './udp-session.ts';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HEADER_TIMEOUT_MS,
  DEFAULT_UDP_IDLE_TIMEOUT_MS,
  PROXY_HANDLER_OPTIONS,
  PROXY_PROTOCOL,
  ProxyServer,
  handleProxyStream,
} from './server.ts';
export type { ProxyLog, ProxyServerContext, ProxyServerMetrics, RejectReason, SessionSummary } from './server.ts';
export { DEFAULT_OPEN_TIMEOUT_MS, ProxyRemoteError, openProxyStream, proxyTcp, udpSession } from './client.ts';
export type { OpenOptions, ProxyChannel } from './client.ts';
