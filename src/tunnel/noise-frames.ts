// noise hands each message down as two pieces, its 2-byte length and its
// ciphertext, and every layer below (the private network, the socket) either
// copies them into one buffer or writes them apart: a system call and a
// 2-byte TCP segment per 64 KiB message, or a copy of every byte (on this
// machine kind a copy costs about 0.33 CPU-seconds per GiB, as much as a
// cipher pass). Our OpenSSL cipher leaves two bytes free in front of each
// ciphertext (openssl-chacha.ts: FRAME_HEADROOM); this encrypt writes the
// length there and hands down one buffer per message. Installed only with
// that cipher; other ciphertexts go down the stock way.
import { Uint8ArrayList } from "uint8arraylist";
import type { ConnectionEncrypter } from "@libp2p/interface";
import { FRAME_HEADROOM } from "./crypto/openssl-chacha.ts";

const PATCHED = Symbol.for("edgemesh.noise.wholeFrames");
/** noise's largest plaintext per message (65535 minus the 16-byte tag) */
const MAX_PLAINTEXT = 65_519;

export interface EncryptingStream {
  handshake: { encrypt(plaintext: Uint8Array | Uint8ArrayList): Uint8Array };
  metrics?: { encryptedPackets: { increment(): void } };
}

/** noise's EncryptedMessageStream.encrypt, handing down one buffer per message (exported for tests) */
export function encryptWholeFrames(this: EncryptingStream, chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList {
  const output = new Uint8ArrayList();
  for (let i = 0; i < chunk.byteLength; i += MAX_PLAINTEXT) {
    const end = Math.min(i + MAX_PLAINTEXT, chunk.byteLength);
    const data = this.handshake.encrypt(chunk instanceof Uint8Array ? chunk.subarray(i, end) : chunk.sublist(i, end));
    this.metrics?.encryptedPackets.increment();
    const n = data.byteLength;
    if (data.byteOffset === FRAME_HEADROOM && data.buffer.byteLength === n + FRAME_HEADROOM) {
      const frame = new Uint8Array(data.buffer, 0, n + FRAME_HEADROOM);
      frame[0] = n >>> 8;
      frame[1] = n & 0xff;
      output.append(frame);
    } else {
      output.append(Uint8Array.of(n >>> 8, n & 0xff), data);
    }
  }
  return output;
}

type Secured = Awaited<ReturnType<ConnectionEncrypter["secureOutbound"]>>;

/** patches the class of noise's encrypted stream the first time one is made */
function patch(result: Secured): Secured {
  const proto = Object.getPrototypeOf(result.connection) as Record<PropertyKey, unknown> | null;
  if (proto && !proto[PATCHED] && typeof proto.encrypt === "function") {
    proto.encrypt = encryptWholeFrames;
    proto[PATCHED] = true;
  }
  return result;
}

/** wraps noise()'s factory so its messages go down whole (use only with the OpenSSL cipher) */
export function wholeNoiseFrames<C>(factory: (components: C) => ConnectionEncrypter): (components: C) => ConnectionEncrypter {
  return (components) => {
    const enc = factory(components);
    const outbound = enc.secureOutbound.bind(enc);
    const inbound = enc.secureInbound.bind(enc);
    enc.secureOutbound = async (connection, options) => patch(await outbound(connection, options));
    enc.secureInbound = async (connection, options) => patch(await inbound(connection, options));
    return enc;
  };
}
