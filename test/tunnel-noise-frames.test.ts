// Noise messages go down as one buffer each (length prefix in the cipher's
// headroom) when the OpenSSL cipher made them, and the stock way otherwise.
import { describe, expect, test } from "bun:test";
import { Uint8ArrayList } from "uint8arraylist";
import { encryptWholeFrames, type EncryptingStream } from "../src/tunnel/noise-frames.ts";
import { loadOpenSslChaCha } from "../src/tunnel/crypto/openssl-chacha.ts";

const aead = loadOpenSslChaCha();
const key = crypto.getRandomValues(new Uint8Array(32));
const nonce = new Uint8Array(12);
const AD = new Uint8Array(0);

function stream(encrypt: (p: Uint8Array | Uint8ArrayList) => Uint8Array): EncryptingStream {
  return { handshake: { encrypt } };
}
/** splits a wire image into noise messages and decrypts each (the same nonce throughout, as the fake handshake uses) */
function readBack(wire: Uint8Array): Uint8Array {
  const out: Uint8Array[] = [];
  for (let off = 0; off < wire.byteLength; ) {
    const n = (wire[off]! << 8) | wire[off + 1]!;
    out.push(aead.decrypt(wire.slice(off + 2, off + 2 + n), nonce, AD, key));
    off += 2 + n;
  }
  return Buffer.concat(out);
}

describe("whole noise frames", () => {
  test("each message is one buffer: prefix then ciphertext, and the wire reads back", () => {
    const plain = crypto.getRandomValues(new Uint8Array(65_519 * 2 + 100));
    const list = new Uint8ArrayList(plain.subarray(0, 70_000), plain.subarray(70_000));
    for (const input of [plain, list]) {
      const out = encryptWholeFrames.call(stream((p) => aead.encrypt(p, nonce, AD, key)), input);
      const pieces = [...out];
      expect(pieces.map((p) => p.byteLength)).toEqual([65_537, 65_537, 118]);
      expect(Buffer.from(readBack(out.subarray())).equals(Buffer.from(plain))).toBe(true);
    }
  });

  test("a ciphertext without headroom (another cipher) goes down as prefix + ciphertext", () => {
    const plain = crypto.getRandomValues(new Uint8Array(1000));
    const foreign = (p: Uint8Array | Uint8ArrayList) => Uint8Array.from(aead.encrypt(p, nonce, AD, key));
    const out = encryptWholeFrames.call(stream(foreign), plain);
    expect([...out].map((p) => p.byteLength)).toEqual([2, 1016]);
    expect(Buffer.from(readBack(out.subarray())).equals(Buffer.from(plain))).toBe(true);
  });
});
