/** Why an arbiter could not answer. The compare of a compare-and-swap failing is an answer, not an error. */
export const ArbiterErrorCode = {
  /** The arbiter did not answer (down, partitioned away, timed out): the node holds its output and asks again. */
  UNREACHABLE: 'ARBITER_UNREACHABLE',
  /** The arbiter refused this node's credentials (wrong user/password, certificate not accepted). */
  AUTH: 'ARBITER_AUTH',
  /** The pair's record in the arbiter is not one colo wrote (edited by hand, another program's key). */
  CORRUPT_RECORD: 'ARBITER_CORRUPT_RECORD',
  /** The arbiter's settings are invalid (kind, endpoints, pair name). */
  BAD_CONFIG: 'ARBITER_BAD_CONFIG',
  /** The arbiter was closed. */
  CLOSED: 'ARBITER_CLOSED',
} as const;
export type ArbiterErrorCode = (typeof ArbiterErrorCode)[keyof typeof ArbiterErrorCode];

export class ArbiterError extends Error {
  override readonly name = 'ArbiterError';
  readonly code: ArbiterErrorCode;
  constructor(code: ArbiterErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${message} (${code})`, options);
    this.code = code;
  }
}
