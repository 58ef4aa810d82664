// Node identities derived from the mesh secret: the Ed25519 key of node N is
// generated from HMAC-SHA256(psk, "edgemesh identity v1" ‖ N). Any member
// computes any peer's ID offline; nobody without the secret can. (Upstream
// derives it from the node name alone, which lets anyone impersonate a node.)
import { createHmac } from "node:crypto";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import type { PeerId, PrivateKey } from "@libp2p/interface";

const IDENTITY_LABEL = "edgemesh identity v1";
const PNET_LABEL = "edgemesh pnet v1";

export function identitySeed(psk: Uint8Array, nodeName: string): Uint8Array {
  return new Uint8Array(createHmac("sha256", psk).update(IDENTITY_LABEL).update(nodeName).digest());
}

export async function deriveKey(psk: Uint8Array, nodeName: string): Promise<PrivateKey> {
  return generateKeyPairFromSeed("Ed25519", identitySeed(psk, nodeName));
}

/** The libp2p private-network key (swarm.key format) derived from the secret. */
export function pnetKey(psk: Uint8Array): Uint8Array {
  const hex = createHmac("sha256", psk).update(PNET_LABEL).digest("hex");
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}`);
}

/** Computes and caches the peer IDs of node names under one secret. */
export class Identities {
  private readonly cache = new Map<string, Promise<PeerId>>();

  constructor(private readonly psk: Uint8Array) {}

  key(nodeName: string): Promise<PrivateKey> {
    return deriveKey(this.psk, nodeName);
  }

  peerId(nodeName: string): Promise<PeerId> {
    let p = this.cache.get(nodeName);
    if (!p) {
      p = deriveKey(this.psk, nodeName).then(peerIdFromPrivateKey);
      this.cache.set(nodeName, p);
      if (this.cache.size > 100_000) this.cache.delete(this.cache.keys().next().value!);
    }
    return p;
  }

  /** as matches, for a peer ID in text form (no parsing: the derived ID's text is compared) */
  async matchesText(peer: string, nodeName: string): Promise<boolean> {
    if (!nodeName) return false;
    return (await this.peerId(nodeName)).toString() === peer;
  }

  /** true when `peer` is the identity the secret gives `nodeName` */
  matches(peer: PeerId, nodeName: string): Promise<boolean> {
    return this.matchesText(peer.toString(), nodeName);
  }
}
