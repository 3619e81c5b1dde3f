import type { CheckpointReason } from '../statechart/types.js';

/**
 * Phases of one checkpoint, as the primary sees them (seconds). Absent phases do not apply to the mode. A type,
 * not an interface, so that it fits a Record of phase names (the slow-checkpoint watch reports phases by name).
 */
export type CheckpointPhases = {
  /** Suspending the primary guest. */
  suspend: number;
  /** COLO: NEW_CHECKPOINT sent until the secondary's dirty list arrived. */
  secondary_suspend?: number;
  /** Reading and sending pages and state records, up to CHECKPOINT_END written. */
  transfer: number;
  /** CHECKPOINT_END sent until READY (COLO) or the ACK (Remus with acks). */
  secondary_apply?: number;
  /** Resuming the primary guest. */
  resume: number;
};

/** One completed checkpoint, emitted for metrics, status and benchmarks. */
export interface CheckpointMeasurement {
  seq: number;
  reason: CheckpointReason;
  /** Unix time (ms) when the checkpoint completed. */
  at: number;
  /** What the primary guest sees: suspend start to resume end. */
  pauseSeconds: number;
  /**
   * The same pause as a window on the primary's performance.now() clock (ms), so that other timings of the
   * process (its collector's) can be set against it. Absent where there is no pause (a secondary's record).
   */
  pauseWindow?: { start: number; end: number };
  /** Trigger to completion (includes the secondary's steps). */
  durationSeconds: number;
  phases: CheckpointPhases;
  /** Its index on the replication link it went over (0 = the initial synchronisation): what the ACK counts. */
  linkIndex: number;
  /** Pages sent (own dirty pages union the secondary's; the initial synchronisation: every pre-copy round's too). */
  pages: number;
  /** Of those, pages sent as deltas (the page-delta extension). */
  deltaPages: number;
  /** Delta pages the secondary lacked the base of, resent whole on its request (PAGE_RESEND). */
  resentPages: number;
  /** Bytes of main stream written for this checkpoint. */
  bytes: number;
}
