import { NODE_DEFAULTS } from '../defaults.js';
import type { CoordinatorError } from '../errors.js';

export type ReplicationMode = 'colo' | 'remus';
export type NodeRole = 'primary' | 'secondary';

/** Why a checkpoint was taken. 'initial' is the first synchronisation (live migration) of a secondary. */
export type CheckpointReason = 'initial' | 'miscompare' | 'stale' | 'periodic' | 'manual' | 'output_bound';
/** The reasons a caller outside the machine may ask for. */
/** output_bound: held client output reached its bound (the output proxy checkpoints rather than grow). */
export const REQUESTABLE_REASONS = ['miscompare', 'stale', 'periodic', 'manual', 'output_bound'] as const;
export type RequestableReason = (typeof REQUESTABLE_REASONS)[number];

/** Timing knobs the machines read through xstate `delays` (milliseconds). */
export interface MachineTimings {
  /** Longest wait for one handshake step of the peer (SUSPENDED, dirty list, READY, RESUMED, ACK, CHECKPOINT_END). */
  phaseTimeoutMs: number;
  /** Longest time without one complete record while a checkpoint or the initial synchronisation streams in. */
  stallTimeoutMs: number;
  /** Remus: time between checkpoints (Xen's xl default 200 ms). */
  remusIntervalMs: number;
  /** COLO: longest time between checkpoints even when outputs keep matching ('periodic'). */
  maxIntervalMs: number;
}

const c = NODE_DEFAULTS.checkpoint;
export const DEFAULT_TIMINGS: MachineTimings = { phaseTimeoutMs: c.phaseTimeoutMs, stallTimeoutMs: c.stallTimeoutMs, remusIntervalMs: c.remusIntervalMs, maxIntervalMs: c.maxIntervalMs };

/** A failure delivered to a machine: always a typed error so the effects can log and report it. */
export interface FailureEvent {
  error: CoordinatorError;
}
