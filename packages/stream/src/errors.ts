/**
 * Every failure of the codec is a StreamError with a stable `code` (for scripts, metrics and tests), the byte
 * offset of the failing header or record, and a message that tells an operator what is wrong and what to do.
 * No other exception type ever escapes the decoder.
 */
export const StreamErrorCode = {
  /** A header's magic/ident/marker/id is not what the format requires: not a stream of this kind. */
  BAD_IDENT: 'STREAM_BAD_IDENT',
  /** A header carries a version this reader does not support. */
  BAD_VERSION: 'STREAM_BAD_VERSION',
  /** A header sets the big-endian bit, a reserved option bit, or a non-zero reserved field. */
  BAD_OPTIONS: 'STREAM_BAD_OPTIONS',
  /** A domain header field is unsupported (guest type, page shift). */
  BAD_DOMAIN_HEADER: 'STREAM_BAD_DOMAIN_HEADER',
  /** Padding after a record body is not zero. */
  BAD_PADDING: 'STREAM_BAD_PADDING',
  /** A record's length field does not match what its type requires. */
  BAD_LENGTH: 'STREAM_BAD_LENGTH',
  /** A record's length field exceeds the configured limit; refused before its body is buffered. */
  RECORD_TOO_LONG: 'STREAM_RECORD_TOO_LONG',
  /** A record's fields are invalid (reserved field non-zero, bad count, invalid page type, ...). */
  BAD_RECORD: 'STREAM_BAD_RECORD',
  /** An unknown mandatory record type (below 0x80000000). */
  UNKNOWN_RECORD: 'STREAM_UNKNOWN_RECORD',
  /** A record that is valid on its own but not allowed here (e.g. CHECKPOINT_END outside a checkpoint). */
  MISPLACED_RECORD: 'STREAM_MISPLACED_RECORD',
  /** The input ended inside a header or record, or before the stream's END. */
  TRUNCATED: 'STREAM_TRUNCATED',
  /** Bytes after the stream's END. */
  TRAILING_DATA: 'STREAM_TRAILING_DATA',
  /** An encoder was asked to write something the format cannot represent. */
  UNENCODABLE: 'STREAM_UNENCODABLE',
  /** The decoder was misused (push after end(), a non-byte chunk) or hit a bug; the message says which. */
  INTERNAL: 'STREAM_INTERNAL',
} as const;
export type StreamErrorCode = (typeof StreamErrorCode)[keyof typeof StreamErrorCode];

export class StreamError extends Error {
  override readonly name: string = 'StreamError';
  readonly code: StreamErrorCode;
  /** Byte offset of the failing header or record (from the start of the stream); -1 when not applicable. */
  readonly offset: number;
  constructor(code: StreamErrorCode, offset: number, message: string, options?: { cause?: unknown }) {
    super(`${message} (${code} at byte ${offset})`, options);
    this.code = code;
    this.offset = offset;
  }
}

export function isStreamError(e: unknown): e is StreamError {
  return e instanceof StreamError;
}
