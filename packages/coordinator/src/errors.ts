/**
 * Every failure the replication core reports is a CoordinatorError with a stable `code` (for logs, metrics,
 * scripts and tests) and a message that tells an operator what happened and what to do.
 */
export const CoordinatorErrorCode = {
  /** A CHECKPOINT_STATE carried a control_id that is not valid in this direction or at this step. */
  UNEXPECTED_CONTROL: 'COLO_UNEXPECTED_CONTROL',
  /** A record that is valid on its own arrived when the handshake does not expect it. */
  MISPLACED_RECORD: 'COLO_MISPLACED_RECORD',
  /** The peer's stream did not decode (corrupt record, bad header, bad padding...). */
  PEER_STREAM_ERROR: 'COLO_PEER_STREAM_ERROR',
  /** A PAGE_DELTA record or one of its encodings is malformed (page-delta extension). */
  DELTA_CORRUPT: 'COLO_DELTA_CORRUPT',
  /** A page delta names a base this secondary's copy of the page is not: the page is not built from it. */
  DELTA_BASE_MISMATCH: 'COLO_DELTA_BASE_MISMATCH',
  /** The peer did not complete a handshake step in time (a stall, even mid-record). */
  PHASE_TIMEOUT: 'COLO_PHASE_TIMEOUT',
  /** A secondary lost its primary before it held one complete checkpoint: it has no consistent state. */
  NOT_SYNCHRONISED: 'COLO_NOT_SYNCHRONISED',
  /** A peer presented an epoch older than one this node has seen: it is a stale former primary. */
  STALE_EPOCH: 'COLO_STALE_EPOCH',
  /** This node met a higher epoch: it no longer acts as primary. */
  FENCED: 'COLO_FENCED',
  /** This node's guest is gone (its hypervisor process ended or hangs): it stops so that its peer takes over. */
  GUEST_LOST: 'COLO_GUEST_LOST',
  /** The replication link to the peer ended (closed, socket error, heartbeat timeout). */
  PEER_LOST: 'COLO_PEER_LOST',
  /** The operation needs a protected pair, and there is no synchronised secondary now. */
  UNPROTECTED: 'COLO_UNPROTECTED',
  /**
   * The client service cannot open (service.listen taken): a secondary refuses to start, since it could not serve
   * after a failover; a promoted node that still cannot open it after retrying stops (it never serves half).
   */
  SERVICE_UNAVAILABLE: 'COLO_SERVICE_UNAVAILABLE',
  /** The node was stopped (or is not running) while the operation was pending. */
  STOPPED: 'COLO_STOPPED',
  /** The peer's hello is not acceptable (wrong mode, role, or a second secondary). */
  PEER_REFUSED: 'COLO_PEER_REFUSED',
  /** The guest described by the primary cannot be hosted, or a checkpoint does not fit it. */
  GUEST_MISMATCH: 'COLO_GUEST_MISMATCH',
  /**
   * A node starting as primary was refused by the arbiter: the pair's epoch is held by the other node or by the
   * protected pair (this node is a stale former primary; start it as a secondary).
   */
  ARBITER_REFUSED: 'COLO_ARBITER_REFUSED',
  /**
   * node.role auto: the arbiter has no record of the pair, but this node's state directory says it has been a
   * member of it (the arbiter's data was lost, or arbiter.pair renamed): an operator decides who holds the guest.
   */
  HISTORY_LOST: 'COLO_PAIR_HISTORY_LOST',
  /** The node's persisted state (node.state_dir/state.json) cannot be read or is not this node's. */
  STATE_CORRUPT: 'COLO_STATE_CORRUPT',
  /** After losing its peer, this node asked the arbiter for the next epoch and the other node had it first. */
  DECISION_LOST: 'COLO_DECISION_LOST',
  /** Options given to the node are invalid. */
  BAD_OPTIONS: 'COLO_BAD_OPTIONS',
  /** The operation is not possible in the node's current state (e.g. failover of an unsynchronised secondary). */
  INVALID_STATE: 'COLO_INVALID_STATE',
} as const;
export type CoordinatorErrorCode = (typeof CoordinatorErrorCode)[keyof typeof CoordinatorErrorCode];

export class CoordinatorError extends Error {
  override readonly name: string = 'CoordinatorError';
  readonly code: CoordinatorErrorCode;
  constructor(code: CoordinatorErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${message} (${code})`, options);
    this.code = code;
  }
}

export function isCoordinatorError(e: unknown): e is CoordinatorError {
  return e instanceof CoordinatorError;
}

/** Wraps any failure (a LinkError, a StreamError, a plain Error) as a CoordinatorError, keeping the cause. */
export function asCoordinatorError(e: unknown, fallback: CoordinatorErrorCode, message: string): CoordinatorError {
  if (e instanceof CoordinatorError) return e;
  const detail = e instanceof Error ? e.message : String(e);
  return new CoordinatorError(fallback, `${message}: ${detail}`, { cause: e });
}
