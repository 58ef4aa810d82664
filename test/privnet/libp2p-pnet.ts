// The stock private-network layer (@libp2p/pnet), kept as the baseline the
// privnet tests and benchmark compare against. One fix: its stream sends
// its whole write buffer through the xsalsa20 wasm in one call when a slow
// link drains, and a buffer of tens of MiB exceeds the wasm memory
// ("WebAssembly.Memory.grow would exceed the memory's declared maximum
// size"), killing the connection and every flow on it. Capping the message
// size makes it encrypt in bounded chunks.
import { preSharedKey } from "@libp2p/pnet";
import type { ConnectionProtector } from "@libp2p/interface";
import { pnetKey } from "../../src/tunnel/identity.ts";

export const PNET_MAX_MESSAGE_BYTES = 64 * 1024;

export function privateNetwork(secret: Uint8Array): (components: never) => ConnectionProtector {
  const factory = preSharedKey({ psk: pnetKey(secret) });
  return (components: never) => {
    const inner = (factory as (c: never) => ConnectionProtector)(components);
    return {
      async protect(conn, options) {
        const boxed = await inner.protect(conn, options);
        (boxed as { maxMessageSize?: number }).maxMessageSize = PNET_MAX_MESSAGE_BYTES;
        return boxed;
      },
    } as ConnectionProtector;
  };
}
