/**
 * Dialing proxy targets on the receiving agent: TCP connect with a timeout,
 * a connected UDP socket per session, and the one-line reasons sent back to
 * the opener ("connect ECONNREFUSED 10.0.0.1:80").
 */
import { isIP } from 'node:net';
import { connectTcp, type BunTcpSocket } from '../../net/bun-socket.ts';
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';

export interface Target {
  host: string;
  port: number;
}

export class DialError extends Error {
  override name = 'DialError';
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL', 'ENODATA']);

export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Same shape as Node's own messages, so operators recognise them. */
export function dialFailure(err: unknown, target: Target, verb = 'connect'): DialError {
  if (err instanceof DialError) return err;
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : undefined;
  if (code && DNS_CODES.has(code)) return new DialError(`getaddrinfo ${code} ${target.host}`, code);
  if (code) return new DialError(`${verb} ${code} ${formatHostPort(target.host, target.port)}`, code);
  const msg = err instanceof Error ? err.message : String(err);
  return new DialError(`${verb} ${formatHostPort(target.host, target.port)}: ${msg}`, undefined);
}

/**
 * Resolves with a connected, half-open-capable socket (reading paused until
 * the caller resumes it), or rejects with a DialError. Bun's own sockets, not
 * node:net: see src/net/bun-socket.ts.
 */
export function dialTcp(target: Target, timeoutMs: number): Promise<BunTcpSocket> {
  return new Promise((resolve, reject) => {
    const { socket, connected } = connectTcp(target.host, target.port);
    const timer = setTimeout(() => {
      socket.abandoned = true; // closed at once if it still connects
      socket.destroy();
      reject(new DialError(`connect ETIMEDOUT ${formatHostPort(target.host, target.port)} (no answer in ${timeoutMs} ms)`, 'ETIMEDOUT'));
    }, timeoutMs);
    connected.then(
      (s) => {
        clearTimeout(timer);
        if (s.abandoned) s.destroy();
        else resolve(s);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(dialFailure(err, target));
      },
    );
  });
}

/**
 * A UDP socket connected to the target: the kernel then filters out datagrams
 * from anyone else, and ICMP errors surface as (ignorable) 'error' events.
 */
export async function openUdp(target: Target): Promise<UdpSocket> {
  let address = target.host;
  if (isIP(address) === 0) {
    try {
      address = (await lookup(target.host)).address;
    } catch (err) {
      throw dialFailure(err, target);
    }
  }
  const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      try {
        socket.close();
      } catch {
        // already closed
      }
      reject(dialFailure(err, target, 'udp connect'));
    };
    socket.once('error', onError);
    socket.connect(target.port, address, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
