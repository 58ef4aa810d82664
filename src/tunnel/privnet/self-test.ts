/**
 * Known-answer checks run once when a provider loads. A provider that fails
 * is not used: a silently different keystream would make this node unable
 * to talk to peers using the other provider, which looks like a wrong secret.
 */
import { chachaBlock, ivAt } from './chacha-ref.ts';
import type { KeystreamFactory } from './keystream.ts';

export const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
export const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

const KEY_00_1F = Uint8Array.from({ length: 32 }, (_, i) => i);

/** RFC 8439 §2.4.2: key 00..1f, counter 1, nonce 000000000000004a00000000. */
export const RFC8439_2_4_2 = {
  key: KEY_00_1F,
  iv: hex('01000000 000000000000004a00000000'),
  plaintext: new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  ),
  ciphertext: hex(`
    6e2e359a2568f98041ba0728dd0d6981 e97e7aec1d4360c20a27afccfd9fae0b
    f91b65c5524733ab8f593dabcd62b357 1639d624e65152ab8f530c359f0861d8
    07ca0dbf500d6a6156a38e088a22b65e 52bc514d16ccf806818ce91ab7793736
    5af90bbf74a35be6b40b8eedf2785e42 874d`),
};

/** RFC 8439 §2.3.2: block function, key 00..1f, counter 1, nonce 000000090000004a00000000. */
export const RFC8439_2_3_2 = {
  key: KEY_00_1F,
  iv: hex('01000000 000000090000004a00000000'),
  block: hex(`
    10f1e7e4d13b5915500fdd1fa32071c4 c7d1f4c733c068030422aa9ac3d46c4e
    d2826446079faa0914c2d705d98b02a2 b5129cd1de164eb9cbd083e8a2503c4e`),
};

/** RFC 8439 Appendix A.1 test vector #1: all-zero key, counter 0, zero nonce (the mode privnet uses). */
export const RFC8439_A_1_1 = {
  key: new Uint8Array(32),
  iv: new Uint8Array(16),
  keystream: hex(`
    76b8e0ada0f13d90405d6ae55386bd28 bdd219b8a08ded1aa836efcc8b770dc7
    da41597c5157488d7724e03fb8d84a37 6a43b8f41518a11cc387b669b2ee6586`),
};

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Throws unless `f` matches RFC 8439 and carries the counter past 2^32 blocks like OpenSSL. */
export function selfTest(f: KeystreamFactory): void {
  const run = (key: Uint8Array, iv: Uint8Array, src: Uint8Array, splits: number[]): Uint8Array => {
    const ks = f.create(key, iv);
    try {
      const out = new Uint8Array(src.byteLength);
      let off = 0;
      for (const n of [...splits, src.byteLength]) {
        const end = Math.min(off + n, src.byteLength);
        if (end > off) ks.xor(src.subarray(off, end), out.subarray(off, end));
        off = end;
      }
      return out;
    } finally {
      ks.destroy();
    }
  };

  const a = RFC8439_A_1_1;
  if (!equal(run(a.key, a.iv, new Uint8Array(64), []), a.keystream)) throw new Error('self-test: RFC 8439 A.1 #1 mismatch');

  const v = RFC8439_2_4_2;
  // Split mid-block and across a block boundary so stream continuation is exercised.
  if (!equal(run(v.key, v.iv, v.plaintext, [7, 64, 1]), v.ciphertext)) throw new Error('self-test: RFC 8439 §2.4.2 mismatch');

  // Two blocks straddling the 32-bit counter boundary, entered mid-block.
  const tail = new Uint8Array(8);
  const expect = new Uint8Array(128);
  expect.set(chachaBlock(a.key, ivAt(0xffffffff, tail)), 0);
  expect.set(chachaBlock(a.key, ivAt(2 ** 32, tail)), 64);
  if (!equal(run(a.key, ivAt(0xffffffff, tail), new Uint8Array(128), [5, 80]), expect)) {
    throw new Error('self-test: block counter does not carry past 2^32 as expected');
  }
}
