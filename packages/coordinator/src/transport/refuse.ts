import type { WebSocket } from 'ws';
import { closeCodeFor, closeReason, LinkError, LinkErrorCode } from './errors.js';
import type { HandshakeReader } from './handshake-reader.js';

/** How long a refused peer gets to answer our close frame before its socket is destroyed. */
const REFUSAL_LINGER_MS = 1000;

/** What the refused peer is told; authentication failures say nothing about which check failed. */
function reasonForPeer(error: LinkError): string {
  switch (error.code) {
    case LinkErrorCode.AUTH_FAILED:
      return 'pre-shared key proof did not match; configure the same key on both nodes';
    case LinkErrorCode.AUTH_MISSING:
      return 'a pre-shared key proof was required and is missing; configure the same key on both nodes';
    default:
      return error.message;
  }
}

/** Normalises whatever a handshake threw into a LinkError. */
export function asLinkError(e: unknown): LinkError {
  if (e instanceof LinkError) return e;
  return new LinkError(LinkErrorCode.PROTOCOL, `the handshake failed: ${(e as Error)?.message ?? String(e)}`, {
    cause: e,
  });
}

/**
 * Ends a socket whose handshake failed. If we found the fault, the close frame carries the code so the peer
 * reports the same LinkError; if the peer already closed or the socket failed, or the peer is silent, the
 * socket is simply destroyed.
 */
export function refuse(ws: WebSocket, reader: HandshakeReader, error: LinkError): void {
  const peerCaused = reader.failed === error;
  if (peerCaused || error.code === LinkErrorCode.CONNECT_TIMEOUT || ws.readyState !== ws.OPEN) {
    // A peer that broke WebSocket framing itself is told so in the RFC's terms (e.g. 1009: too big) on the way out.
    if (peerCaused && error.closeCode !== undefined && ws.readyState === ws.OPEN) ws.close(error.closeCode, closeReason(error.message));
    ws.terminate();
    return;
  }
  ws.close(closeCodeFor(error.code), closeReason(reasonForPeer(error)));
  const timer = setTimeout(() => ws.terminate(), REFUSAL_LINGER_MS);
  timer.unref();
  ws.once('close', () => clearTimeout(timer));
}
