import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Channel } from './hello.js';

/**
 * The pre-shared-key proof. Each side proves it knows the key by returning an HMAC-SHA256 over both nonces:
 * the server's fresh nonce makes a recorded client proof useless on any other connection, the client's fresh
 * nonce does the same for the server's proof, and the side label ("client"/"server") keeps one side's proof
 * from being reflected back as the other's. The channel and the protocol version are inside the MAC, so a
 * proof for the proxy channel or for another protocol version is not a proof for this one.
 */
export const NONCE_BYTES = 32;
/** Shorter keys are refused: 128 bits is the least an HMAC key guarding a guest's memory should have. */
export const MIN_PSK_BYTES = 16;
const LABEL = 'colo-auth-v1';

export type ProofSide = 'client' | 'server';

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export function pskProof(
  key: Uint8Array,
  side: ProofSide,
  channel: Channel,
  serverNonce: Uint8Array,
  clientNonce: Uint8Array,
): Buffer {
  return createHmac('sha256', key)
    .update(`${LABEL}|${side}|${channel}|`)
    .update(serverNonce)
    .update(clientNonce)
    .digest();
}

/** Constant-time comparison; a proof of the wrong length is simply wrong. */
export function proofMatches(expected: Uint8Array, received: Uint8Array): boolean {
  return expected.length === received.length && timingSafeEqual(expected, received);
}
