import type { CoordinatorError } from '../errors.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import type { CheckpointReason, NodeRole, ReplicationMode } from '../statechart/types.js';
import type { ArbitrationStatus } from './arbitration.js';

/**
 * A primary's initial synchronisation of a secondary, while it runs: the pre-copy round, its pages sent of the
 * round's total, their bytes, and the round's seconds so far (a rate and the time left follow from them).
 */
export interface SyncProgress {
  round: number;
  pagesSent: number;
  totalPages: number;
  bytesSent: number;
  seconds: number;
}

export interface NodeStatus {
  nodeId: string;
  role: NodeRole;
  /** Dotted statechart state, e.g. 'protected.idle', 'synchronised.running'. */
  state: string;
  mode: 'colo' | 'remus';
  epoch: number;
  /** Primary: a synchronised secondary is attached. Secondary: it holds a complete checkpoint. Never in blackhole. */
  protected: boolean;
  /** A Remus primary checkpointing into nothing: not protected, whatever its state says. */
  blackhole: boolean;
  /** The peer's address while linked. */
  peer: string | null;
  /** Where this node listens for a secondary (primary), when it does. */
  listening: string | null;
  lastCheckpoint: { seq: number; reason: CheckpointReason; at: number; durationSeconds: number; pauseSeconds: number; pages: number; bytes: number } | null;
  checkpoints: Record<CheckpointReason, number>;
  /** Why the node last left an active state (fenced, halted, dropped secondary), if it did. */
  lastError: { code: string; message: string } | null;
  /** Primary, during a secondary's initial synchronisation: the pre-copy round and its pages sent so far. */
  sync: SyncProgress | null;
  /** The arbiter: kind, reachable, a request waiting, the last decision. */
  arbiter: ArbitrationStatus;
}

/** What a node's status is made of, as its owners hold it (the context, the role object, the arbitration). */
export interface StatusFacts {
  nodeId: string;
  role: NodeRole;
  state: string;
  mode: ReplicationMode;
  epoch: number;
  blackhole: boolean;
  peer: string | null;
  listening: string | null;
  lastCheckpoint: CheckpointMeasurement | null;
  checkpoints: Readonly<Record<CheckpointReason, number>>;
  lastError: CoordinatorError | null;
  sync: SyncProgress | null;
  arbiter: ArbitrationStatus;
}

/** A primary is protected once it has a synchronised secondary; a secondary once it holds a checkpoint. */
export function isProtectedState(role: NodeRole, state: string): boolean {
  return role === 'primary' ? state.startsWith('protected') : state.startsWith('synchronised');
}

/** The status a node reports: a function of its facts alone (no state of its own, nothing read twice). */
export function nodeStatus(f: StatusFacts): NodeStatus {
  const lc = f.lastCheckpoint;
  return {
    nodeId: f.nodeId,
    role: f.role,
    state: f.state,
    mode: f.mode,
    epoch: f.epoch,
    protected: !f.blackhole && isProtectedState(f.role, f.state),
    blackhole: f.blackhole,
    peer: f.peer,
    listening: f.listening,
    lastCheckpoint: lc ? { seq: lc.seq, reason: lc.reason, at: lc.at, durationSeconds: lc.durationSeconds, pauseSeconds: lc.pauseSeconds, pages: lc.pages, bytes: lc.bytes } : null,
    checkpoints: { ...f.checkpoints },
    lastError: f.lastError ? { code: f.lastError.code, message: f.lastError.message } : null,
    sync: f.role === 'primary' ? f.sync : null,
    arbiter: f.arbiter,
  };
}
