/**
 * Split-brain protection: the arbiter decides every role change of a pair.
 *
 * The pair's record in the arbiter says which epoch is current and who may act alone in it. Every change of it
 * is one atomic compare-and-swap on the epoch: of two nodes that lost each other and both ask for epoch e+1,
 * exactly one wins. Nothing here rests on clocks or timeouts: a node that paused for any length of time and
 * then asks with a stale epoch loses the compare, whatever its clock says (docs/architecture.md, "The arbiter").
 */

/** The holder of an epoch while both nodes back it (a protected pair). */
export const PAIR_HOLDER = 'pair';

/** The pair's record: the current epoch and who holds it (a node id, or PAIR_HOLDER). */
export interface EpochRecord {
  epoch: number;
  holder: string;
}

/** What a compare-and-swap expects to find: a record at `epoch` (held by `holder`, when given), or none. */
export type EpochExpectation = { epoch: number; holder?: string } | null;

export interface SwapResult {
  /** The swap happened: the record is now the one asked for. */
  swapped: boolean;
  /** The record after the attempt (the new one when swapped, the one that stopped it otherwise). */
  current: EpochRecord | null;
}

export type ArbiterKind = 'none' | 'local' | 'etcd';

export interface Arbiter {
  /** For logs, status and metrics. */
  readonly kind: ArbiterKind;
  /** Where it is reached (endpoints, a socket path), for status and logs; never a credential. */
  readonly where: string;
  /** The pair's current record, or null when the pair has none yet. Rejects with ArbiterError when unreachable. */
  read(): Promise<EpochRecord | null>;
  /**
   * Atomically: if the pair's record matches `expect` (null: there is no record), replace it with `next`.
   * Resolves with whether it did and what the record is now; rejects with ArbiterError only when the arbiter
   * cannot be reached or refuses the request (credentials), never because the compare failed.
   */
  compareAndSwap(expect: EpochExpectation, next: EpochRecord): Promise<SwapResult>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Whether `record` satisfies `expect` (the compare of compareAndSwap; shared by the in-process arbiters). */
export function matchesExpectation(record: EpochRecord | null, expect: EpochExpectation): boolean {
  if (expect === null) return record === null;
  if (record === null) return false;
  return record.epoch === expect.epoch && (expect.holder === undefined || record.holder === expect.holder);
}
