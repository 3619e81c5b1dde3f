import { LinkError, LinkErrorCode } from './errors.js';
import { NONCE_BYTES } from './psk.js';

/**
 * The handshake messages, each one JSON in one binary frame. They travel only before the link opens; after
 * the listener's hello every binary frame is stream bytes, so there is no in-band framing to confuse with
 * guest data. Order: challenge (server), auth (client), auth-ok (server), hello (client), hello (server).
 */
export interface ChallengeMessage {
  t: 'challenge';
  /** Handshake format version; equal to the link protocol version. */
  v: number;
  /** Server nonce, hex. */
  nonce: string;
  /** Whether the listener demands a pre-shared-key proof. */
  psk: boolean;
}
export interface AuthMessage {
  t: 'auth';
  channel: string;
  /** Client nonce, hex. */
  nonce: string;
  /** HMAC proof (hex), or null when the dialer has no key. */
  proof: string | null;
}
export interface AuthOkMessage {
  t: 'auth-ok';
  /** The server's HMAC proof (hex), or null when the listener has no key (TLS-only). */
  proof: string | null;
}
export interface HelloMessage {
  t: 'hello';
  hello: unknown;
}
export type HandshakeMessage = ChallengeMessage | AuthMessage | AuthOkMessage | HelloMessage;

/** Handshake messages are tiny; anything bigger is not one. */
export const MAX_HANDSHAKE_MESSAGE = 8 * 1024;

export function encodeMessage(message: HandshakeMessage): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}

export function decodeMessage<T extends HandshakeMessage['t']>(
  frame: Buffer,
  expected: T,
): Extract<HandshakeMessage, { t: T }> {
  const bad = (what: string) =>
    new LinkError(LinkErrorCode.PROTOCOL, `expected the handshake message '${expected}' from the peer, got ${what}`);
  if (frame.length > MAX_HANDSHAKE_MESSAGE) throw bad(`a ${frame.length}-byte frame`);
  let value: unknown;
  try {
    value = JSON.parse(frame.toString('utf8'));
  } catch {
    throw bad('bytes that are not a handshake message (is the peer a colo node of this release?)');
  }
  if (typeof value !== 'object' || value === null || (value as { t?: unknown }).t !== expected) {
    throw bad(`'${String((value as { t?: unknown } | null)?.t)}'`);
  }
  const m = value as Record<string, unknown>;
  const nonceOk = (n: unknown) => typeof n === 'string' && n.length === NONCE_BYTES * 2 && /^[0-9a-f]+$/.test(n);
  const proofOk = (p: unknown) => p === null || (typeof p === 'string' && p.length <= 128 && /^[0-9a-f]*$/.test(p));
  switch (expected) {
    case 'challenge':
      if (typeof m.v !== 'number' || !nonceOk(m.nonce) || typeof m.psk !== 'boolean') throw bad('a malformed challenge');
      break;
    case 'auth':
      if (typeof m.channel !== 'string' || !nonceOk(m.nonce) || !proofOk(m.proof)) throw bad('a malformed auth');
      break;
    case 'auth-ok':
      if (!proofOk(m.proof)) throw bad('a malformed auth-ok');
      break;
    case 'hello':
      if (!('hello' in m)) throw bad('a hello without a body');
      break;
  }
  return value as Extract<HandshakeMessage, { t: T }>;
}
