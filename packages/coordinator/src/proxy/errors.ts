/**
 * Failures of the output proxy. Each carries a stable `code` (for logs, metrics and tests) and a message that
 * says what happened and what the operator or the node runtime should do about it.
 */
export const ProxyErrorCode = {
  /** A proxy-link frame announced a body larger than the configured limit (refused before buffering it). */
  FRAME_TOO_LARGE: 'PROXY_FRAME_TOO_LARGE',
  /** A proxy-link frame carried a message type this side does not know. */
  UNKNOWN_MESSAGE: 'PROXY_UNKNOWN_MESSAGE',
  /** A proxy-link frame's body does not fit its message type (too short, bad kind/flag byte, huge number). */
  MALFORMED_FRAME: 'PROXY_MALFORMED_FRAME',
  /** The proxy link ended in the middle of a frame. */
  TRUNCATED_FRAME: 'PROXY_TRUNCATED_FRAME',
  /** An input event arrived out of sequence (a gap or a duplicate): the total order is broken. */
  INPUT_OUT_OF_ORDER: 'PROXY_INPUT_OUT_OF_ORDER',
  /** The secondary did not receive the primary's barrier for a checkpoint in time. */
  BARRIER_TIMEOUT: 'PROXY_BARRIER_TIMEOUT',
  /** A hook was called in a state where it makes no sense (e.g. rewinding input while the gate is open). */
  INVALID_STATE: 'PROXY_INVALID_STATE',
  /** The client service listener could not listen (address in use, permission). */
  LISTEN_FAILED: 'PROXY_LISTEN_FAILED',
  /** The proxy was closed while the operation was pending. */
  CLOSED: 'PROXY_CLOSED',
} as const;
export type ProxyErrorCode = (typeof ProxyErrorCode)[keyof typeof ProxyErrorCode];

export class ProxyError extends Error {
  override readonly name: string = 'ProxyError';
  readonly code: ProxyErrorCode;
  constructor(code: ProxyErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${message} (${code})`, options);
    this.code = code;
  }
}

export function isProxyError(e: unknown): e is ProxyError {
  return e instanceof ProxyError;
}
