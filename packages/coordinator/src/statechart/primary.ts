import { assign, setup } from 'xstate';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { DEFAULT_TIMINGS, type CheckpointReason, type MachineTimings, type ReplicationMode, type RequestableReason } from './types.js';

/**
 * The primary's statechart: protection of one guest by one secondary at a time.
 *
 * It knows handshake steps, not bytes: the checkpoint engine turns back-channel records into the SECONDARY_*
 * events below, and performs the actions (named in PrimaryEffects) by writing records and driving the Domain.
 * Each effect that takes time reports back with an event (PRECOPY_DONE, CHECKPOINT_SENT).
 */
export type PrimaryEvent =
  | { type: 'SECONDARY_CONNECTED'; peer: string; ack: boolean }
  | { type: 'PRECOPY_DONE' }
  | { type: 'CHECKPOINT_SENT' }
  | { type: 'SECONDARY_SUSPENDED' }
  | { type: 'SECONDARY_DIRTY'; pfns: readonly number[] }
  | { type: 'SECONDARY_READY' }
  | { type: 'SECONDARY_RESUMED' }
  | { type: 'CHECKPOINT_ACK'; seq: number }
  | { type: 'CHECKPOINT_REQUESTED'; reason: RequestableReason }
  | { type: 'SECONDARY_LOST'; error: CoordinatorError }
  | { type: 'HIGHER_EPOCH_SEEN'; epoch: number }
  /** This node's guest is gone (its hypervisor process ended): the node stops acting, never asks to go on alone. */
  | { type: 'GUEST_LOST'; error: CoordinatorError }
  /** The arbiter gave this node `epoch` to act alone in (it continues unprotected). */
  | { type: 'DECISION_WON'; epoch: number }
  /** The arbiter gave the epoch to the other node: this one must stop acting as primary. */
  | { type: 'DECISION_LOST'; error: CoordinatorError }
  | { type: 'FAILOVER' }
  | { type: 'STOP' };

export interface PrimaryInput {
  nodeId: string;
  mode: ReplicationMode;
  epoch: number;
  timings?: Partial<MachineTimings>;
  /** Global checkpoint numbering continues across secondaries (status and the ack promises use it). */
  lastSeq?: number;
}

export interface CurrentCheckpoint {
  seq: number;
  reason: CheckpointReason;
}

export interface PrimaryContext {
  nodeId: string;
  mode: ReplicationMode;
  epoch: number;
  timings: MachineTimings;
  /** The secondary's address while one is attached. */
  peer: string | null;
  /** Whether the attached secondary negotiated checkpoint acknowledgements. */
  ackEnabled: boolean;
  /** Sequence number of the last checkpoint started (global). */
  seq: number;
  /** The checkpoint in progress. */
  current: CurrentCheckpoint | null;
  /** Requests that arrived during a checkpoint: they coalesce into the next one. */
  pending: RequestableReason[];
  /** Checkpoint index on the current link (0 = the initial synchronisation): what the secondary's ACK counts. */
  linkIndex: number;
  /** Why the machine left an active state (fenced, demoted, secondary dropped). */
  lastError: CoordinatorError | null;
}

/** The effects a primary machine asks for. Implemented by the node runtime (engine + link), recorded in tests. */
export interface PrimaryEffects {
  /** Start the live migration: enable the dirty log, send the stream headers, run pre-copy rounds, then PRECOPY_DONE. */
  startLiveMigration(ctx: PrimaryContext): void;
  /** Send CHECKPOINT_STATE(NEW_CHECKPOINT) on the main stream (COLO). */
  sendNewCheckpoint(ctx: PrimaryContext): void;
  /**
   * Suspend the guest, send its dirty pages (union `secondaryDirty`), TSC, HVM_CONTEXT, HVM_PARAMS, CHECKPOINT,
   * EMULATOR records, CHECKPOINT_END, then CHECKPOINT_SENT.
   */
  suspendAndSendCheckpoint(ctx: PrimaryContext, secondaryDirty: readonly number[]): void;
  /** Resume the guest (end of the pause). */
  resumeGuest(ctx: PrimaryContext): void;
  /** The checkpoint in ctx.current is complete (and acknowledged, when acks are on). */
  checkpointCompleted(ctx: PrimaryContext, checkpoint: CurrentCheckpoint): void;
  /** Protection began (first synchronisation complete). */
  protectionStarted(ctx: PrimaryContext): void;
  /**
   * Drop the secondary: close its link with `error`, resume the guest if it is suspended, fail waiting requests.
   * Output the secondary has not backed stays held (it may have taken over): only continueAlone releases it.
   */
  dropSecondary(ctx: PrimaryContext, error: CoordinatorError): void;
  /**
   * Ask the arbiter for epoch ctx.epoch + 1, to continue alone; answers with DECISION_WON or DECISION_LOST. An
   * arbiter that cannot be reached is asked again until it answers: meanwhile output stays held.
   */
  decide(ctx: PrimaryContext): void;
  /** This node won ctx.epoch: release the held output and serve unprotected. */
  continueAlone(ctx: PrimaryContext): void;
  /** A checkpoint request that cannot be served (no secondary). */
  refuseRequest(ctx: PrimaryContext, reason: RequestableReason): void;
  /** Stop acting as primary: suspend the guest for good, close the link, drop held output. */
  stepDown(ctx: PrimaryContext, error: CoordinatorError): void;
}

const noop = () => {};
const checkpointStart = (ctx: PrimaryContext, reason: CheckpointReason) => ({
  seq: ctx.seq + 1,
  current: { seq: ctx.seq + 1, reason },
});

// Losing the secondary, however it happens, means asking the arbiter before any unbacked output leaves.
const lostTransition = {
  target: '#primary.deciding',
  actions: [
    { type: 'dropSecondary' as const, params: ({ event }: { event: PrimaryEvent }) => ({ error: (event as { error: CoordinatorError }).error }) },
  ],
};

function timeoutTransition(step: string) {
  return {
    target: '#primary.deciding',
    actions: [
      {
        type: 'dropSecondary' as const,
        params: () => ({
          error: new CoordinatorError(CoordinatorErrorCode.PHASE_TIMEOUT, `the secondary did not ${step} in time: dropping it`),
        }),
      },
    ],
  };
}

/** Back-channel events a state did not ask for: the secondary is not following the handshake. */
function misplaced(what: string) {
  return {
    target: '#primary.deciding',
    actions: [
      {
        type: 'dropSecondary' as const,
        params: ({ context }: { context: PrimaryContext }) => ({
          error: new CoordinatorError(
            CoordinatorErrorCode.MISPLACED_RECORD,
            `the secondary sent ${what} when the primary did not expect it (peer ${context.peer ?? 'none'}): dropping it`,
          ),
        }),
      },
    ],
  };
}

/** Every back-channel report, each misplaced: for the states that expect none of them. */
const noReportExpected = {
  SECONDARY_SUSPENDED: misplaced('SUSPENDED'),
  SECONDARY_DIRTY: misplaced('a dirty pfn list'),
  SECONDARY_READY: misplaced('READY'),
  SECONDARY_RESUMED: misplaced('RESUMED'),
  CHECKPOINT_ACK: misplaced('a checkpoint ACK'),
};

/**
 * How a written checkpoint completes, the same for the initial synchronisation and for every later one (only
 * the final state's name and the timeout messages differ): COLO waits for READY, resumes, then waits for
 * RESUMED; Remus resumes at once (Xen does too; output stays held until the ACK) and, if the secondary
 * negotiated acknowledgements, waits for the ACK of this checkpoint.
 */
function completion(done: string, what: { ready: string; ack: string }) {
  return {
    /** The CHECKPOINT_SENT transitions of the state that wrote the checkpoint. */
    sent: [
      { guard: 'isColo' as const, target: 'awaitingReady' },
      { guard: 'ackEnabled' as const, target: 'awaitingAck', actions: 'resumeGuest' as const },
      { target: done, actions: 'resumeGuest' as const },
    ],
    /** The waiting states, siblings of the writing state and of `done`. */
    states: {
      awaitingReady: {
        on: { SECONDARY_READY: { target: 'awaitingResumed', actions: 'resumeGuest' as const } },
        after: { phaseTimeout: timeoutTransition(what.ready) },
      },
      awaitingResumed: {
        on: { SECONDARY_RESUMED: done },
        after: { phaseTimeout: timeoutTransition('report RESUMED') },
      },
      awaitingAck: {
        on: { CHECKPOINT_ACK: [{ guard: 'ackMatches' as const, target: done }, misplaced('an ACK for the wrong checkpoint')] },
        after: { phaseTimeout: timeoutTransition(what.ack) },
      },
    },
  };
}

const initialCompletion = completion('synchronised', {
  ready: 'report READY after the initial synchronisation',
  ack: 'acknowledge the initial synchronisation',
});
const checkpointCompletion = completion('done', { ready: 'report READY', ack: 'acknowledge the checkpoint' });

export const primaryMachine = setup({
  types: {
    context: {} as PrimaryContext,
    events: {} as PrimaryEvent,
    input: {} as PrimaryInput,
  },
  actions: {
    startLiveMigration: noop,
    sendNewCheckpoint: noop,
    suspendAndSendCheckpoint: (_, _params: { secondaryDirty: readonly number[] }) => {},
    resumeGuest: noop,
    checkpointCompleted: noop,
    protectionStarted: noop,
    dropSecondary: (_, _params: { error: CoordinatorError }) => {},
    refuseRequest: (_, _params: { reason: RequestableReason }) => {},
    stepDown: (_, _params: { error: CoordinatorError }) => {},
    decide: noop,
    continueAlone: noop,
    adoptEpoch: assign(({ event, context }) => ({
      epoch: event.type === 'DECISION_WON' ? event.epoch : context.epoch,
    })),
    attach: assign(({ event }) => {
      const e = event as Extract<PrimaryEvent, { type: 'SECONDARY_CONNECTED' }>;
      return { peer: e.peer, ackEnabled: e.ack, linkIndex: 0, pending: [] };
    }),
    detach: assign({ peer: null, ackEnabled: false, current: null, pending: [] }),
    startInitial: assign(({ context }) => checkpointStart(context, 'initial')),
    startRequested: assign(({ context, event }) =>
      checkpointStart(context, (event as Extract<PrimaryEvent, { type: 'CHECKPOINT_REQUESTED' }>).reason),
    ),
    startPeriodic: assign(({ context }) => checkpointStart(context, 'periodic')),
    startPending: assign(({ context }) => ({
      // Several coalesced requests become one checkpoint; it carries the first reason asked for.
      ...checkpointStart(context, context.pending[0] ?? 'periodic'),
      pending: [],
    })),
    coalesce: assign(({ context, event }) => ({
      pending: [...context.pending, (event as Extract<PrimaryEvent, { type: 'CHECKPOINT_REQUESTED' }>).reason],
    })),
    finishCheckpoint: assign(({ context }) => ({ linkIndex: context.linkIndex + 1, current: null })),
    recordError: assign((_, params: { error: CoordinatorError }) => ({ lastError: params.error })),
  },
  guards: {
    isColo: ({ context }) => context.mode === 'colo',
    isRemus: ({ context }) => context.mode === 'remus',
    ackEnabled: ({ context }) => context.ackEnabled,
    hasPending: ({ context }) => context.pending.length > 0,
    ackMatches: ({ context, event }) =>
      (event as Extract<PrimaryEvent, { type: 'CHECKPOINT_ACK' }>).seq === context.linkIndex,
  },
  delays: {
    phaseTimeout: ({ context }) => context.timings.phaseTimeoutMs,
    checkpointInterval: ({ context }) =>
      context.mode === 'remus' ? context.timings.remusIntervalMs : context.timings.maxIntervalMs,
  },
}).createMachine({
  id: 'primary',
  context: ({ input }) => ({
    nodeId: input.nodeId,
    mode: input.mode,
    epoch: input.epoch,
    timings: { ...DEFAULT_TIMINGS, ...input.timings },
    peer: null,
    ackEnabled: false,
    seq: input.lastSeq ?? 0,
    current: null,
    pending: [],
    linkIndex: 0,
    lastError: null,
  }),
  initial: 'unprotected',
  on: {
    HIGHER_EPOCH_SEEN: {
      target: '.fenced',
      actions: {
        type: 'stepDown',
        params: ({ context, event }) => ({
          error: new CoordinatorError(
            CoordinatorErrorCode.FENCED,
            `met epoch ${event.epoch} above this primary's ${context.epoch}: another node was promoted; stepping down`,
          ),
        }),
      },
    },
    // Whatever the state: a primary without a guest has nothing to protect or serve. It steps down without asking
    // the arbiter, so that its secondary (which holds the last checkpoint) is the one that asks and wins.
    GUEST_LOST: {
      target: '.fenced',
      actions: { type: 'stepDown', params: ({ event }) => ({ error: event.error }) },
    },
    FAILOVER: {
      target: '.demoted',
      actions: {
        type: 'stepDown',
        params: () => ({
          error: new CoordinatorError(CoordinatorErrorCode.FENCED, 'operator failover: this primary stops so its secondary takes over'),
        }),
      },
    },
    STOP: { target: '.stopped', actions: { type: 'dropSecondary', params: () => ({ error: new CoordinatorError(CoordinatorErrorCode.STOPPED, 'node stopped') }) } },
  },
  states: {
    unprotected: {
      entry: 'detach',
      on: {
        SECONDARY_CONNECTED: { target: 'syncing', actions: 'attach' },
        CHECKPOINT_REQUESTED: { actions: { type: 'refuseRequest', params: ({ event }) => ({ reason: event.reason }) } },
        // Stray back-channel events of a link already dropped are ignored here: nobody is attached.
      },
    },
    syncing: {
      entry: 'startInitial',
      initial: 'precopy',
      on: {
        SECONDARY_LOST: lostTransition,
        CHECKPOINT_REQUESTED: { actions: 'coalesce' },
        ...noReportExpected,
      },
      states: {
        // Pre-copy rounds while the guest runs; no timer: the heartbeat and the secondary's stall timer cover it.
        precopy: {
          entry: 'startLiveMigration',
          on: { PRECOPY_DONE: 'stopAndCopy' },
        },
        stopAndCopy: {
          entry: { type: 'suspendAndSendCheckpoint', params: () => ({ secondaryDirty: [] }) },
          on: { CHECKPOINT_SENT: initialCompletion.sent },
        },
        ...initialCompletion.states,
        synchronised: {
          type: 'final',
          entry: [
            { type: 'checkpointCompleted', params: () => ({}) },
            'finishCheckpoint',
            'protectionStarted',
          ],
        },
      },
      onDone: [{ guard: 'hasPending', target: 'protected.checkpointing', actions: 'startPending' }, { target: 'protected' }],
    },
    /**
     * The secondary is lost: it may have taken over. Output it has not backed stays held and no input reaches the
     * guest until the arbiter answers; no timer: a node that cannot reach the arbiter waits, whatever the wait.
     */
    deciding: {
      entry: ['detach', 'decide'],
      on: {
        DECISION_WON: { target: 'unprotected', actions: ['adoptEpoch', 'continueAlone'] },
        DECISION_LOST: {
          target: 'fenced',
          actions: { type: 'stepDown', params: ({ event }) => ({ error: event.error }) },
        },
        CHECKPOINT_REQUESTED: { actions: { type: 'refuseRequest', params: ({ event }) => ({ reason: event.reason }) } },
      },
    },
    protected: {
      initial: 'idle',
      on: {
        SECONDARY_LOST: lostTransition,
      },
      states: {
        idle: {
          on: {
            CHECKPOINT_REQUESTED: { target: 'checkpointing', actions: 'startRequested' },
            ...noReportExpected,
          },
          after: { checkpointInterval: { target: 'checkpointing', actions: 'startPeriodic' } },
        },
        checkpointing: {
          initial: 'starting',
          on: {
            CHECKPOINT_REQUESTED: { actions: 'coalesce' },
            // The states below override the reports they wait for.
            ...noReportExpected,
          },
          states: {
            starting: {
              always: [{ guard: 'isColo', target: 'awaitingSuspended' }, { target: 'transferring' }],
            },
            // COLO step 1-2: NEW_CHECKPOINT out, wait for the secondary to stop its guest and list its dirty pages.
            awaitingSuspended: {
              entry: 'sendNewCheckpoint',
              on: { SECONDARY_SUSPENDED: 'awaitingDirtyList' },
              after: { phaseTimeout: timeoutTransition('report SUSPENDED') },
            },
            awaitingDirtyList: {
              on: { SECONDARY_DIRTY: 'transferring' },
              after: { phaseTimeout: timeoutTransition('send its dirty pfn list') },
            },
            // Step 3: suspend, send own dirty pages UNION the secondary's, then the state records.
            transferring: {
              entry: {
                type: 'suspendAndSendCheckpoint',
                params: ({ event }) => ({ secondaryDirty: event.type === 'SECONDARY_DIRTY' ? event.pfns : [] }),
              },
              on: { CHECKPOINT_SENT: checkpointCompletion.sent },
            },
            ...checkpointCompletion.states,
            done: { type: 'final', entry: [{ type: 'checkpointCompleted', params: () => ({}) }, 'finishCheckpoint'] },
          },
          onDone: [
            { guard: 'hasPending', target: 'checkpointing', reenter: true, actions: 'startPending' },
            { target: 'idle' },
          ],
        },
      },
    },
    /** Met a higher epoch or lost the arbiter's decision: no longer primary. Final: the node decides what comes next. */
    fenced: { type: 'final' },
    /** Operator failover on the primary: it stopped so its secondary takes over. */
    demoted: { type: 'final' },
    stopped: { type: 'final' },
  },
});

export type PrimaryMachine = typeof primaryMachine;
