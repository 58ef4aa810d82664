/**
 * Reads one header off a libp2p stream via its 'message' events. When the
 * header is complete the listener is removed, so later bytes wait in the
 * stream's read buffer for whoever attaches next (pipe, UDP session); the
 * bytes that arrived with the header are returned as `rest`.
 */
import type { Stream } from '@libp2p/interface';
import type { StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { flatten } from './bytes.ts';
import type { Decoded } from './header.ts';

/** anything that turns chunks into one decoded header */
export interface ChunkDecoder<T> {
  push(chunk: Uint8Array): Decoded<T> | undefined;
}

export class HeaderTimeoutError extends Error {
  override name = 'HeaderTimeoutError';
}

export class StreamEndedError extends Error {
  override name = 'StreamEndedError';
}

export function readHeader<T>(stream: Stream, decoder: ChunkDecoder<T>, timeoutMs: number, what: string): Promise<Decoded<T>> {
  return new Promise((resolve, reject) => {
    const finish = (err: Error | undefined, value?: Decoded<T>): void => {
      clearTimeout(timer);
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('end', onEnd);
      stream.removeEventListener('close', onClose);
      if (err) reject(err);
      else resolve(value!);
    };
    const onMessage = (evt: StreamMessageEvent): void => {
      try {
        const decoded = decoder.push(flatten(evt.data));
        if (decoded) finish(undefined, decoded);
      } catch (err) {
        finish(err as Error);
      }
    };
    const onEnd = (): void => finish(new StreamEndedError(`stream ended before the ${what} was complete`));
    const onClose = (evt: StreamCloseEvent): void =>
      finish(new StreamEndedError(`stream closed before the ${what} was complete${evt.error ? `: ${evt.error.message}` : ''}`));
    const timer = setTimeout(() => finish(new HeaderTimeoutError(`no complete ${what} within ${timeoutMs} ms`)), timeoutMs);

    if (stream.status !== 'open') return finish(new StreamEndedError(`stream is ${stream.status} before the ${what} was read`));
    stream.addEventListener('message', onMessage);
    stream.addEventListener('close', onClose);
    // 'end' may already have fired (remote closed with nothing left to read).
    if (stream.readableEnded && stream.readBufferLength === 0) return onEnd();
    stream.addEventListener('end', onEnd);
  });
}
