/**
 * Key schedule of "edgemesh privnet" v1 and v2.
 *
 *   swarmKey = HMAC-SHA256(secret, "edgemesh privnet key v1")
 *   key_out  = HMAC-SHA256(swarmKey, "edgemesh privnet v1 " || localNonce || remoteNonce)
 *   key_in   = HMAC-SHA256(swarmKey, "edgemesh privnet v1 " || remoteNonce || localNonce)
 *
 * Fresh nonces from both sides make every (connection, direction) key
 * unique, so a fixed all-zero ChaCha20 iv never repeats keystream.
 *
 * privnet v2 sends a proof instead of encrypting:
 *   proof_out = HMAC-SHA256(swarmKey, "edgemesh privnet v2 proof " || localNonce || remoteNonce)
 *   proof_in  = HMAC-SHA256(swarmKey, "edgemesh privnet v2 proof " || remoteNonce || localNonce)
 * The nonces bind it to this connection (a proof seen on another connection
 * is worth nothing) and their order to the sender's side (equal nonces are
 * refused, so a proof reflected back never matches).
 */
import { createHmac } from 'node:crypto';

export const NONCE_BYTES = 24;
const SWARM_LABEL = 'edgemesh privnet key v1';
const DIRECTION_LABEL = new TextEncoder().encode('edgemesh privnet v1 ');
const PROOF_LABEL = new TextEncoder().encode('edgemesh privnet v2 proof ');
export const PROOF_BYTES = 32;

export function deriveSwarmKey(secret: Uint8Array): Uint8Array {
  if (secret.byteLength === 0) throw new RangeError('privnet: empty mesh secret');
  return new Uint8Array(createHmac('sha256', secret).update(SWARM_LABEL).digest());
}

export function deriveDirectionKeys(
  swarmKey: Uint8Array,
  localNonce: Uint8Array,
  remoteNonce: Uint8Array,
): { out: Uint8Array; in: Uint8Array } {
  return pair(swarmKey, DIRECTION_LABEL, localNonce, remoteNonce);
}

export function deriveProofs(
  swarmKey: Uint8Array,
  localNonce: Uint8Array,
  remoteNonce: Uint8Array,
): { out: Uint8Array; in: Uint8Array } {
  return pair(swarmKey, PROOF_LABEL, localNonce, remoteNonce);
}

function pair(swarmKey: Uint8Array, label: Uint8Array, localNonce: Uint8Array, remoteNonce: Uint8Array): { out: Uint8Array; in: Uint8Array } {
  if (localNonce.byteLength !== NONCE_BYTES || remoteNonce.byteLength !== NONCE_BYTES) {
    throw new RangeError(`privnet: nonces must be ${NONCE_BYTES} bytes`);
  }
  const mac = (first: Uint8Array, second: Uint8Array): Uint8Array =>
    new Uint8Array(createHmac('sha256', swarmKey).update(label).update(first).update(second).digest());
  return { out: mac(localNonce, remoteNonce), in: mac(remoteNonce, localNonce) };
}
