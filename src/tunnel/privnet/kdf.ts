/**
 * Key schedule of "edgemesh privnet v1".
 *
 *   swarmKey = HMAC-SHA256(secret, "edgemesh privnet key v1")
 *   key_out  = HMAC-SHA256(swarmKey, "edgemesh privnet v1 " || localNonce || remoteNonce)
 *   key_in   = HMAC-SHA256(swarmKey, "edgemesh privnet v1 " || remoteNonce || localNonce)
 *
 * Fresh nonces from both sides make every (connection, direction) key
 * unique, so a fixed all-zero ChaCha20 iv never repeats keystream.
 */
import { createHmac } from 'node:crypto';

export const NONCE_BYTES = 24;
const SWARM_LABEL = 'edgemesh privnet key v1';
const DIRECTION_LABEL = new TextEncoder().encode('edgemesh privnet v1 ');

export function deriveSwarmKey(secret: Uint8Array): Uint8Array {
  if (secret.byteLength === 0) throw new RangeError('privnet: empty mesh secret');
  return new Uint8Array(createHmac('sha256', secret).update(SWARM_LABEL).digest());
}

export function deriveDirectionKeys(
  swarmKey: Uint8Array,
  localNonce: Uint8Array,
  remoteNonce: Uint8Array,
): { out: Uint8Array; in: Uint8Array } {
  if (localNonce.byteLength !== NONCE_BYTES || remoteNonce.byteLength !== NONCE_BYTES) {
    throw new RangeError(`privnet: nonces must be ${NONCE_BYTES} bytes`);
  }
  const key = (first: Uint8Array, second: Uint8Array): Uint8Array =>
    new Uint8Array(createHmac('sha256', swarmKey).update(DIRECTION_LABEL).update(first).update(second).digest());
  return { out: key(localNonce, remoteNonce), in: key(remoteNonce, localNonce) };
}
