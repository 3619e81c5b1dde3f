import type { ProtectionMode, ProxyCheckpointReason } from './types.js';

/** What a proxy counts, for the node's metrics (colo_output_compare_total, colo_held_output_bytes, ...). */
export interface ProxyMetrics {
  /** 'unprotected' while output passes straight through (no secondary, or a secondary proxy not promoted). */
  protection: ProtectionMode | 'unprotected';
  /** COLO comparison results over the node's life (its OutputTotals: every proxy and every secondary it had). */
  compare: { match: number; miscompare: number; stale: number };
  /** Output held back now (COLO: unmatched primary output; Remus: unacknowledged output). */
  heldBytes: number;
  /** Primary: released output waits for the arbiter ('decision': the secondary was lost; 'record': protection is being recorded). */
  arbiterHold?: 'decision' | 'record' | null;
  /** Client input bytes taken in (primary) or received over the proxy link (secondary), over the node's life in this role. */
  bytesIn: number;
  /** Output bytes released to clients (primary) or sent to the primary for comparison (secondary), likewise. */
  bytesOut: number;
  /** Checkpoints this proxy asked for, by reason. */
  checkpointRequests: Record<ProxyCheckpointReason, number>;
  /** The last input seq the guest processed, and how many events wait for the guest. */
  lastDeliveredSeq: number;
  pendingInputEvents: number;
  /** Events the guest processed that are kept for a rewind (a COLO secondary: those above the primary's watermark). */
  retainedInputEvents: number;
}

/** COLO comparison results, counted by the comparator into the object it is given. */
export interface CompareResults {
  /** Output segments found equal in both guests and released. */
  match: number;
  /** Differences found (at most one per generation: comparison stops until the next checkpoint). */
  miscompare: number;
  /** Generations in which output waited longer than compareTimeoutMs for its twin. */
  stale: number;
}

/**
 * What a node's proxies count over the node's life. The node owns one and hands it to every proxy it makes (a
 * primary's, each secondary one of a resynchronisation, the primary one of a promotion), which adds to it on its
 * hot path: a replaced proxy's counts stay, and the node's metrics read the totals as they are.
 */
export interface OutputTotals {
  compare: CompareResults;
  /** Primary: client input bytes taken in, and output bytes released to clients. */
  clientBytesIn: number;
  clientBytesOut: number;
  /** Secondary: input bytes received over the proxy link, and its guest's output sent to the primary to compare. */
  mirroredBytesIn: number;
  comparedBytesOut: number;
}

export function newOutputTotals(): OutputTotals {
  return { compare: { match: 0, miscompare: 0, stale: 0 }, clientBytesIn: 0, clientBytesOut: 0, mirroredBytesIn: 0, comparedBytesOut: 0 };
}

export function emptyRequests(): Record<ProxyCheckpointReason, number> {
  return { miscompare: 0, stale: 0, output_bound: 0 };
}
