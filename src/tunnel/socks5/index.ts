/** SOCKS5 front door (CONNECT, no auth) over the proxy protocol: public surface. */
export { ATYP, COMMAND, METHOD, REPLY, buildMethodSelection, buildReply, formatIPv6, parseGreeting, parseIPv6, parseRequest, replyCodeFor, selectMethod } from './protocol.ts';
export type { AddressType, Parse, Socks5Target } from './protocol.ts';
export { DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_OPEN_TIMEOUT_MS, startSocks5 } from './server.ts';
export type { Socks5Options, Socks5Route, Socks5Server } from './server.ts';
