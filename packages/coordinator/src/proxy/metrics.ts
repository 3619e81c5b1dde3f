import type { ProtectionMode, ProxyCheckpointReason } from './types.js';

/** What a proxy counts, for the node's metrics (colo_output_compare_total, colo_held_output_bytes, ...). */
export interface ProxyMetrics {
  /** 'unprotected' while output passes straight through (no secondary, or a secondary proxy not promoted). */
  protection: ProtectionMode | 'unprotected';
  /** COLO comparison results since the proxy started (over every secondary it had). */
  compare: { match: number; miscompare: number; stale: number };
  /** Output held back now (COLO: unmatched primary output; Remus: unacknowledged output). */
  heldBytes: number;
  /** Primary: released output waits for the arbiter ('decision': the secondary was lost; 'record': protection is being recorded). */
  arbiterHold?: 'decision' | 'record' | null;
  /** Client input bytes taken in (primary) or received over the proxy link (secondary). */
  bytesIn: number;
  /** Output bytes released to clients (primary) or sent to the primary for comparison (secondary). */
  bytesOut: number;
  /** Checkpoints this proxy asked for, by reason. */
  checkpointRequests: Record<ProxyCheckpointReason, number>;
  /** The last input seq the guest processed, and how many events wait for the guest. */
  lastDeliveredSeq: number;
  pendingInputEvents: number;
  /** Events the guest processed that are kept for a rewind (a COLO secondary: those above the primary's watermark). */
  retainedInputEvents: number;
}

export function emptyRequests(): Record<ProxyCheckpointReason, number> {
  return { miscompare: 0, stale: 0, output_bound: 0 };
}
