// The part of a TCP socket the pipes use. node:net's Socket has it, and so
// does BunTcpSocket (bun-socket.ts), the lighter socket the traffic paths use:
// pipes and tests work with either.
export interface ByteSocket {
  readonly destroyed: boolean;
  readonly writable: boolean;
  /** true once 'end' (the peer's FIN) has been emitted */
  readonly readableEnded: boolean;
  allowHalfOpen: boolean;
  readonly remoteAddress?: string;
  /** false: the bytes are queued, wait for 'drain' */
  write(chunk: Uint8Array): boolean;
  /** sends FIN once queued bytes are out; reading goes on */
  end(): void;
  destroy(err?: Error): void;
  /** closes with a TCP RST */
  resetAndDestroy?(): unknown;
  pause(): unknown;
  resume(): unknown;
  on(event: "data", fn: (chunk: Buffer) => void): unknown;
  on(event: "end" | "drain", fn: () => void): unknown;
  on(event: "close", fn: (hadError: boolean) => void): unknown;
  on(event: "error", fn: (err: Error) => void): unknown;
  once(event: "drain" | "end", fn: () => void): unknown;
  once(event: "close", fn: (hadError: boolean) => void): unknown;
  off(event: "data", fn: (chunk: Buffer) => void): unknown;
}
