import { assign, setup } from 'xstate';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { DEFAULT_TIMINGS, type MachineTimings, type ReplicationMode } from './types.js';

/**
 * The secondary's statechart. Two halves:
 * - `syncing`: before the first complete checkpoint the secondary holds no consistent state; losing the
 *   primary here means stopping (COLO_NOT_SYNCHRONISED), never taking over.
 * - `synchronised`: it holds the last complete checkpoint; losing the primary means discarding any
 *   half-received checkpoint, resuming, and promotion.
 *
 * The checkpoint engine turns main-stream records into events: NEW_CHECKPOINT (CHECKPOINT_STATE 0),
 * STREAM_PROGRESS (any other complete record: the stall timer restarts), CHECKPOINT_RECEIVED (CHECKPOINT_END:
 * the whole checkpoint is buffered). Effects report back with GUEST_SUSPENDED and CHECKPOINT_APPLIED.
 */
export type SecondaryEvent =
  | { type: 'CONNECTED'; peer: string; epoch: number; ack: boolean }
  | { type: 'NEW_CHECKPOINT' }
  | { type: 'GUEST_SUSPENDED' }
  | { type: 'STREAM_PROGRESS' }
  | { type: 'CHECKPOINT_RECEIVED' }
  | { type: 'CHECKPOINT_APPLIED' }
  | { type: 'PRIMARY_LOST'; error: CoordinatorError }
  /** The arbiter gave this node `epoch`: it takes over. */
  | { type: 'DECISION_WON'; epoch: number }
  /** The arbiter gave the epoch to the primary: this node's replica is out of date, it stands down. */
  | { type: 'DECISION_LOST'; error: CoordinatorError }
  | { type: 'FAILOVER' }
  | { type: 'STOP' };

export interface SecondaryInput {
  nodeId: string;
  mode: ReplicationMode;
  /** The highest epoch this node has seen (a primary below it is refused before the machine hears of it). */
  epoch: number;
  timings?: Partial<MachineTimings>;
}

export interface SecondaryContext {
  nodeId: string;
  mode: ReplicationMode;
  epoch: number;
  timings: MachineTimings;
  peer: string | null;
  ackEnabled: boolean;
  /** Checkpoints applied on this link; the initial synchronisation is checkpoint 0. -1 before it. */
  applied: number;
  /** Why the machine stopped, is deciding, or promoted. */
  lastError: CoordinatorError | null;
}

export interface SecondaryEffects {
  /** Suspend the guest, then send SUSPENDED and CHECKPOINT_DIRTY_PFN_LIST (its own dirty pages); then GUEST_SUSPENDED. */
  suspendAndReportDirty(ctx: SecondaryContext): void;
  /** Apply the buffered checkpoint atomically (all or nothing); then CHECKPOINT_APPLIED. */
  applyCheckpoint(ctx: SecondaryContext): void;
  /** COLO: send READY, resume the guest, send RESUMED. */
  readyAndResume(ctx: SecondaryContext): void;
  /** Remus: send the checkpoint ACK for checkpoint `ctx.applied` (when negotiated). */
  acknowledge(ctx: SecondaryContext): void;
  /** Forget the half-received checkpoint: nothing of it reaches the guest. */
  discardCheckpoint(ctx: SecondaryContext): void;
  /** The primary is lost (`error` says how): close the link; the guest keeps its last complete checkpoint. */
  abandonPrimary(ctx: SecondaryContext, error: CoordinatorError): void;
  /**
   * Ask the arbiter for epoch ctx.epoch + 1, to take over; answers with DECISION_WON or DECISION_LOST. An
   * arbiter that cannot be reached is asked again until it answers: meanwhile this node does not promote.
   */
  decide(ctx: SecondaryContext): void;
  /** Take over: resume the guest if suspended, act as primary at ctx.epoch (won from the arbiter). */
  promote(ctx: SecondaryContext): void;
  /** The primary kept the epoch: discard the replica and leave (the node joins again as a new secondary). */
  standDown(ctx: SecondaryContext, error: CoordinatorError): void;
  /** Stop without taking over; `error` says why. */
  halt(ctx: SecondaryContext, error: CoordinatorError): void;
  /** An operator failover that cannot be honoured now. */
  refuseFailover(ctx: SecondaryContext, error: CoordinatorError): void;
}

const noop = () => {};

type Failure = { error: CoordinatorError };
const errorOf = ({ event }: { event: SecondaryEvent }): Failure => ({
  error:
    event.type === 'PRIMARY_LOST'
      ? event.error
      : new CoordinatorError(CoordinatorErrorCode.PEER_LOST, `replication ended by ${event.type}`),
});

function phaseTimeout(step: string) {
  return () => ({
    error: new CoordinatorError(CoordinatorErrorCode.PHASE_TIMEOUT, `the primary stalled: no ${step} in time`),
  });
}

function misplacedError(what: string) {
  return () => ({
    error: new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, `the primary sent ${what} out of place`),
  });
}

export const secondaryMachine = setup({
  types: {
    context: {} as SecondaryContext,
    events: {} as SecondaryEvent,
    input: {} as SecondaryInput,
  },
  actions: {
    suspendAndReportDirty: noop,
    applyCheckpoint: noop,
    readyAndResume: noop,
    acknowledge: noop,
    discardCheckpoint: noop,
    abandonPrimary: (_, _p: Failure) => {},
    decide: noop,
    promote: noop,
    standDown: (_, _p: Failure) => {},
    halt: (_, _p: Failure) => {},
    refuseFailover: (_, _p: Failure) => {},
    attach: assign(({ event, context }) => {
      const e = event as Extract<SecondaryEvent, { type: 'CONNECTED' }>;
      return { peer: e.peer, ackEnabled: e.ack, epoch: Math.max(context.epoch, e.epoch) };
    }),
    countApplied: assign(({ context }) => ({ applied: context.applied + 1 })),
    adoptEpoch: assign(({ event, context }) => ({ epoch: event.type === 'DECISION_WON' ? event.epoch : context.epoch })),
    recordError: assign((_, p: Failure) => ({ lastError: p.error })),
  },
  guards: {
    isColo: ({ context }) => context.mode === 'colo',
  },
  delays: {
    phaseTimeout: ({ context }) => context.timings.phaseTimeoutMs,
    stallTimeout: ({ context }) => context.timings.stallTimeoutMs,
  },
}).createMachine({
  id: 'secondary',
  context: ({ input }) => ({
    nodeId: input.nodeId,
    mode: input.mode,
    epoch: input.epoch,
    timings: { ...DEFAULT_TIMINGS, ...input.timings },
    peer: null,
    ackEnabled: false,
    applied: -1,
    lastError: null,
  }),
  initial: 'syncing',
  on: {
    STOP: { target: '.stopped', actions: [{ type: 'discardCheckpoint' }, { type: 'halt', params: () => ({ error: new CoordinatorError(CoordinatorErrorCode.STOPPED, 'node stopped') }) }] },
  },
  states: {
    syncing: {
      initial: 'connecting',
      on: {
        PRIMARY_LOST: { target: 'halted', actions: ['discardCheckpoint', { type: 'halt', params: notSynchronised }] },
        FAILOVER: {
          actions: {
            type: 'refuseFailover',
            params: () => ({
              error: new CoordinatorError(
                CoordinatorErrorCode.NOT_SYNCHRONISED,
                'this secondary has no complete checkpoint yet: it cannot take over',
              ),
            }),
          },
        },
      },
      states: {
        connecting: {
          on: { CONNECTED: { target: 'receiving', actions: 'attach' } },
        },
        // The live migration streams in; pages land in the not-yet-running guest. CHECKPOINT_END closes it.
        receiving: {
          on: {
            STREAM_PROGRESS: { target: 'receiving', reenter: true },
            CHECKPOINT_RECEIVED: 'applying',
            NEW_CHECKPOINT: {
              target: '#secondary.halted',
              actions: ['discardCheckpoint', { type: 'halt', params: misplacedError('NEW_CHECKPOINT before the first checkpoint') }],
            },
          },
          after: {
            stallTimeout: {
              target: '#secondary.halted',
              actions: ['discardCheckpoint', { type: 'halt', params: phaseTimeout('record of the initial synchronisation') }],
            },
          },
        },
        applying: {
          entry: 'applyCheckpoint',
          on: {
            CHECKPOINT_APPLIED: [
              { guard: 'isColo', target: '#secondary.synchronised.running', actions: ['countApplied', 'readyAndResume'] },
              { target: '#secondary.synchronised.standby', actions: ['countApplied', 'acknowledge'] },
            ],
          },
        },
      },
    },
    synchronised: {
      initial: 'running',
      on: {
        PRIMARY_LOST: lost(errorOf),
        FAILOVER: lost(() => ({ error: new CoordinatorError(CoordinatorErrorCode.PEER_LOST, 'operator failover') })),
      },
      states: {
        // COLO: the guest runs on mirrored input; the primary decides when to checkpoint.
        running: {
          on: {
            NEW_CHECKPOINT: 'suspending',
            STREAM_PROGRESS: lost(misplacedError('checkpoint data without NEW_CHECKPOINT')),
            CHECKPOINT_RECEIVED: lost(misplacedError('CHECKPOINT_END without NEW_CHECKPOINT')),
          },
        },
        suspending: {
          entry: 'suspendAndReportDirty',
          on: {
            GUEST_SUSPENDED: 'receiving',
            // Data may overtake our own suspension report only if the primary ignores the handshake.
            STREAM_PROGRESS: lost(misplacedError('checkpoint data before SUSPENDED')),
            CHECKPOINT_RECEIVED: lost(misplacedError('CHECKPOINT_END before SUSPENDED')),
            NEW_CHECKPOINT: lost(misplacedError('a second NEW_CHECKPOINT')),
          },
        },
        // Remus: the guest never runs here; checkpoints stream in every interval.
        standby: {
          on: {
            STREAM_PROGRESS: 'receiving',
            CHECKPOINT_RECEIVED: 'applying',
            NEW_CHECKPOINT: lost(misplacedError('NEW_CHECKPOINT in Remus mode')),
          },
        },
        // Every record is buffered; nothing touches the guest before CHECKPOINT_END.
        receiving: {
          on: {
            STREAM_PROGRESS: { target: 'receiving', reenter: true },
            CHECKPOINT_RECEIVED: 'applying',
            NEW_CHECKPOINT: lost(misplacedError('NEW_CHECKPOINT inside a checkpoint')),
          },
          after: {
            stallTimeout: lost(phaseTimeout('CHECKPOINT_END')),
          },
        },
        applying: {
          entry: 'applyCheckpoint',
          on: {
            CHECKPOINT_APPLIED: [
              { guard: 'isColo', target: 'running', actions: ['countApplied', 'readyAndResume'] },
              { target: 'standby', actions: ['countApplied', 'acknowledge'] },
            ],
          },
        },
      },
    },
    /**
     * The primary is lost and this node holds a complete checkpoint: it asks the arbiter for the next epoch and
     * does nothing else until the answer (no timer: an unreachable arbiter is asked again, however long it takes).
     */
    deciding: {
      entry: 'decide',
      on: {
        DECISION_WON: { target: 'promoted', actions: ['adoptEpoch', 'promote'] },
        DECISION_LOST: { target: 'fenced', actions: ['discardCheckpoint', { type: 'standDown', params: ({ event }) => ({ error: event.error }) }] },
        // Already on its way to taking over, if the arbiter agrees.
        FAILOVER: {},
      },
    },
    /** The primary won the epoch: this replica is out of date; the node discards it and joins again. */
    fenced: { type: 'final' },
    /** Took over: the node now runs a primary machine at context.epoch. */
    promoted: { type: 'final' },
    /** Lost the primary before holding a consistent state (or refused it): stopped, not serving. */
    halted: { type: 'final' },
    stopped: { type: 'final' },
  },
});

/** Losing the primary while synchronised: keep the last complete checkpoint and ask the arbiter. */
function lost(params: (args: { event: SecondaryEvent }) => Failure) {
  return {
    target: '#secondary.deciding' as const,
    actions: ['discardCheckpoint' as const, { type: 'recordError' as const, params }, { type: 'abandonPrimary' as const, params }],
  };
}

function notSynchronised({ event }: { event: SecondaryEvent }): Failure {
  const cause = event.type === 'PRIMARY_LOST' ? event.error : undefined;
  return {
    error: new CoordinatorError(
      CoordinatorErrorCode.NOT_SYNCHRONISED,
      `lost the primary before the first complete checkpoint${cause ? ` (${cause.message})` : ''}: ` +
        'this secondary holds no consistent state and will not take over',
      { cause },
    ),
  };
}

export type SecondaryMachine = typeof secondaryMachine;
