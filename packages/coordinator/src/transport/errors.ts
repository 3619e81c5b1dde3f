/**
 * Every failure of a peer link is a LinkError with a stable `code` (for scripts, metrics, tests and the
 * replication statechart, which fails over on some codes and retries on others) and a message that tells an
 * operator what happened and what to do.
 *
 * Each code also has a WebSocket close code in the private range 4000-4999, so the side that refuses a link
 * can tell the other side why in the close frame itself and both ends report the same code.
 */
export const LinkErrorCode = {
  /** The peer proved a different pre-shared key (or the proof was forged or replayed). */
  AUTH_FAILED: 'LINK_AUTH_FAILED',
  /** One side demanded a proof the other side cannot give: no pre-shared key configured on it. */
  AUTH_MISSING: 'LINK_AUTH_MISSING',
  /** The TLS handshake failed: certificate from another CA, no client certificate, wrong host name, ... */
  TLS_FAILED: 'LINK_TLS_FAILED',
  /** The listener's hello callback refused the peer (e.g. a stale epoch, a second secondary). */
  REFUSED: 'LINK_REFUSED',
  /** The two sides speak different versions of the colo link protocol. */
  VERSION_MISMATCH: 'LINK_VERSION_MISMATCH',
  /** Nothing was received from the peer for the heartbeat timeout: the peer or the network is hung. */
  HEARTBEAT_TIMEOUT: 'LINK_HEARTBEAT_TIMEOUT',
  /** The peer closed the link (cleanly, or the connection vanished without a close frame). */
  CLOSED: 'LINK_CLOSED',
  /** The socket failed (connection refused, reset, unreachable). */
  SOCKET_ERROR: 'LINK_SOCKET_ERROR',
  /** The peer broke the link protocol: a text frame, a malformed handshake message, an oversize frame. */
  PROTOCOL: 'LINK_PROTOCOL',
  /** The link was not established (authenticated and hello exchanged) within the deadline. */
  CONNECT_TIMEOUT: 'LINK_CONNECT_TIMEOUT',
  /** The link options are invalid (short key, no security at all, bad heartbeat numbers, bad URL). */
  CONFIG: 'LINK_CONFIG',
} as const;
export type LinkErrorCode = (typeof LinkErrorCode)[keyof typeof LinkErrorCode];

export class LinkError extends Error {
  override readonly name: string = 'LinkError';
  readonly code: LinkErrorCode;
  /**
   * The RFC 6455 status to close with, for a violation of WebSocket framing itself (1002, 1003, 1009): any
   * WebSocket peer understands it, and it is what a peer that has not authenticated yet is told.
   */
  readonly closeCode: number | undefined;
  constructor(code: LinkErrorCode, message: string, options?: { cause?: unknown; closeCode?: number }) {
    super(`${message} (${code})`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.closeCode = options?.closeCode;
  }
}

export function isLinkError(e: unknown): e is LinkError {
  return e instanceof LinkError;
}

/** Close codes the link sends so the peer learns why it was refused or dropped. */
const CLOSE_CODE_OF: Partial<Record<LinkErrorCode, number>> = {
  LINK_AUTH_FAILED: 4001,
  LINK_AUTH_MISSING: 4002,
  LINK_REFUSED: 4003,
  LINK_VERSION_MISMATCH: 4004,
  LINK_PROTOCOL: 4005,
  LINK_CONNECT_TIMEOUT: 4006,
  LINK_HEARTBEAT_TIMEOUT: 4007,
  LINK_TLS_FAILED: 4008,
};

export function closeCodeFor(code: LinkErrorCode): number {
  return CLOSE_CODE_OF[code] ?? 4005;
}

/** The close code that tells the peer about `error`: its RFC 6455 status if it has one, else colo's own code. */
export function closeCodeOf(error: LinkError): number {
  return error.closeCode ?? closeCodeFor(error.code);
}

/** Normal closure (RFC 6455 1000): what close() sends. */
export const CLOSE_NORMAL = 1000;

/**
 * What a close frame received from the peer means locally. 1000/1001 and 1006 (no close frame: the
 * connection just vanished) are LINK_CLOSED; RFC 6455 protocol-level codes are LINK_PROTOCOL; our 4xxx codes
 * map back to the code the peer reported.
 */
export function errorFromPeerClose(closeCode: number, reason: string): LinkError {
  for (const [code, value] of Object.entries(CLOSE_CODE_OF)) {
    if (value === closeCode) {
      // The peer's reason is its own error's message, ending in the code this error adds again.
      const said = reason.endsWith(` (${code})`) ? reason.slice(0, -code.length - 3) : reason;
      return new LinkError(code as LinkErrorCode, `the peer ended the link: ${said || 'no reason given'}`);
    }
  }
  if (closeCode === 1002 || closeCode === 1003 || closeCode === 1007 || closeCode === 1009) {
    return new LinkError(
      LinkErrorCode.PROTOCOL,
      `the peer closed the link for a protocol violation (close code ${closeCode}${reason ? `: ${reason}` : ''})`,
    );
  }
  if (closeCode === 1006) {
    return new LinkError(LinkErrorCode.CLOSED, 'the connection to the peer dropped without a close frame');
  }
  return new LinkError(
    LinkErrorCode.CLOSED,
    `the peer closed the link (close code ${closeCode}${reason ? `: ${reason}` : ''})`,
  );
}

/** A close reason must fit in a control frame (123 bytes of UTF-8). */
export function closeReason(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= 123) return text;
  return bytes.subarray(0, 120).toString('utf8').replace(/\uFFFD$/, '') + '...';
}
