import { EventEmitter } from 'node:events';
import type { Domain } from '@colo/domain';
import pino, { type Logger } from 'pino';
import { noArbiter } from '../arbiter/none.js';
import type { CoordinatorError } from '../errors.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import type { PrecopyLimits } from '../engine/primary-engine.js';
import { NODE_DEFAULTS, type CheckpointOptions } from '../defaults.js';
import type { GuestHooks } from '../engine/guest-hooks.js';
import type { AppliedCheckpointTiming } from '../engine/secondary-engine.js';
import { ALL_EXTENSIONS, Extension } from '../engine/extensions.js';
import type { NodeRole } from '../statechart/types.js';
import { PROTOCOL_VERSION, wsNetwork, type Hello, type PeerNetwork, type ReadRingStats } from '../transport/index.js';
import { childLogger } from '../observability/logger.js';
import { Arbitration } from './arbitration.js';
import { CompletedCheckpoints } from './checkpoints.js';
import type { ColoNodeOptions } from './options.js';
import type { Transition } from './transitions.js';

/** Events a node emits (besides onTransition). */
export interface ColoNodeEvents {
  checkpoint: [CheckpointMeasurement];
  /** Secondary side: checkpoint `index` on this link applied (guest still suspended), with its timing. */
  applied: [number, Domain, AppliedCheckpointTiming];
  /** Primary side: every record of checkpoint `seq` written (guest suspended). */
  written: [number, Domain];
  protected: [];
  unprotected: [CoordinatorError];
  promoted: [number];
  halted: [CoordinatorError];
  fenced: [CoordinatorError];
  /** Lost the peer: asking the arbiter (output held, no promotion) until it answers. */
  deciding: [CoordinatorError];
  /** Primary: won `epoch` after losing the secondary: held output may leave, the node serves unprotected. */
  continuing: [number];
  /** Primary: the arbiter records the pair as protected at `epoch` (output backed by the secondary may leave). */
  pairProtected: [number];
  /**
   * The guest is about to be suspended (emitted synchronously right before, whoever suspends it: a checkpoint, a
   * step-down), with the link index of the checkpoint it takes (undefined: none): the output proxy closes its
   * input gate here (GuestHooks).
   */
  suspending: [linkIndex: number | undefined];
  /** The guest runs again (emitted right after it resumed). */
  resumed: [];
  /**
   * Every link of the peer is gone (one of them ended, or the peer was dropped), with why and its cause: the code
   * of the link error that ended it (LINK_HEARTBEAT_TIMEOUT, LINK_CLOSED, ...), or 'dropped' (a reason found by
   * the node: bad bytes, a barrier missing). Once per peer.
   */
  peerLost: [reason: string, cause: string];
  /** Primary: a peer's link refused at the handshake (its code: LINK_AUTH_FAILED, LINK_TLS_FAILED, ...). */
  linkRefused: [code: string];
}

/**
 * What a node's roles share, each fact with one owner: the options, the role and epoch of the moment, the guest,
 * the arbitration, the completed checkpoints, the replication link's read totals, the events and the logs. A
 * role object (PrimaryRole, SecondaryRole) holds only what belongs to it: its machine, its link, its engine.
 */
export class NodeContext {
  readonly o: ColoNodeOptions;
  /** The node's logger without a component: each part (transport, engine) binds its own. */
  readonly baseLog: Logger;
  readonly log: Logger;
  readonly arbitration: Arbitration;
  readonly events = new EventEmitter<ColoNodeEvents>();
  readonly transitionListeners = new Set<(t: Transition) => void>();
  readonly checkpoints = new CompletedCheckpoints();
  readonly network: PeerNetwork;
  /** The checkpoint section, defaults applied: the machines read their timings from it. */
  readonly checkpoint: CheckpointOptions;
  /** The engine's pre-copy limits (checkpoint.precopyMaxRounds, checkpoint.precopyMinDirty). */
  readonly precopy: PrecopyLimits;
  /** Remus blackhole: checkpoints go nowhere (remus.blackhole). */
  readonly blackhole: boolean;
  role: NodeRole;
  epoch: number;
  guest: Domain | undefined;
  /** Why the node last left an active state (fenced, halted, dropped secondary), if it did. */
  lastError: CoordinatorError | null = null;
  stopped = false;
  /** Main-stream bytes received as a secondary, over every link so far. */
  streamBytesReceived = 0;
  /** Socket reads of the replication links that have ended (the current link adds its own live). */
  readonly endedLinkReads: ReadRingStats = { ringReads: 0, fallbackReads: 0, copiedReads: 0 };

  constructor(options: ColoNodeOptions) {
    this.o = options;
    this.role = options.role;
    this.epoch = options.epoch ?? 0;
    this.guest = options.domain;
    this.checkpoint = { ...NODE_DEFAULTS.checkpoint, ...options.checkpoint };
    this.precopy = { maxRounds: this.checkpoint.precopyMaxRounds, minDirtyPages: this.checkpoint.precopyMinDirty };
    this.blackhole = options.remus?.blackhole ?? NODE_DEFAULTS.remus.blackhole;
    this.network = options.network ?? wsNetwork;
    this.baseLog = childLogger(options.logger ?? pino({ level: 'info' }), { node: options.nodeId });
    this.arbitration = new Arbitration(options.arbiter ?? noArbiter(), childLogger(this.baseLog, { component: 'arbiter' }));
    this.log = childLogger(this.baseLog, { component: 'replication' });
  }

  /** Every suspend and resume of the guest, reported as the suspending/resumed events (GuestHooks). */
  readonly guestHooks: GuestHooks = {
    suspending: (linkIndex) => this.events.emit('suspending', linkIndex),
    resumed: () => this.events.emit('resumed'),
  };

  /** A suspension that takes no checkpoint (a step-down, a failed promotion, a guest created running). */
  async suspendGuest(): Promise<void> {
    this.guestHooks.suspending(undefined);
    await this.guest!.suspend();
  }

  async resumeGuest(): Promise<void> {
    await this.guest!.resume();
    this.guestHooks.resumed();
  }

  hello(role: NodeRole): Hello {
    return {
      protocol: PROTOCOL_VERSION,
      channel: 'replication',
      nodeId: this.o.nodeId,
      role,
      mode: this.o.mode,
      epoch: this.epoch,
      extensions: this.offeredExtensions(),
    };
  }

  /** What this node offers in its hello: the extensions option, or all of them less page deltas without compression. */
  offeredExtensions(): string[] {
    if (this.o.extensions) return [...this.o.extensions];
    const compression = this.o.replication.compression ?? NODE_DEFAULTS.replication.compression;
    return ALL_EXTENSIONS.filter((e) => compression || e !== Extension.PAGE_DELTA);
  }

  /** The logger bound to the current role and epoch, made again only when either changes. */
  roleLogger(): Logger {
    const r = this.roleLog;
    if (r !== undefined && r.role === this.role && r.epoch === this.epoch) return r.logger;
    // A pino child serialises its bindings when made: one per transition was ~60 us of every checkpoint.
    const logger = this.log.child({ role: this.role, epoch: this.epoch });
    this.roleLog = { role: this.role, epoch: this.epoch, logger };
    return logger;
  }
  private roleLog: { role: string; epoch: number; logger: Logger } | undefined;

  reportTransition(t: Transition): void {
    // Steps inside the protected/synchronised state repeat at every checkpoint (5 a second in Remus): debug.
    const routine = (t.from.startsWith('protected.') && t.to.startsWith('protected.')) || (t.from.startsWith('synchronised.') && t.to.startsWith('synchronised.'));
    // A primary starts unprotected (waiting for its secondary): a warning only when it falls back to it.
    const level = t.to === 'fenced' || t.to === 'halted' || (t.to === 'unprotected' && t.from !== '(start)') ? 'warn' : routine ? 'debug' : 'info';
    // Five or so routine steps per checkpoint, inside its pause: no log object or message built for nothing.
    const logger = this.roleLogger();
    if (logger.isLevelEnabled(level)) logger[level]({ from: t.from, to: t.to, event: t.event }, `state ${t.from} -> ${t.to}`);
    for (const cb of this.transitionListeners) {
      try {
        cb(t);
      } catch (e) {
        this.log.error({ err: e }, 'transition listener threw');
      }
    }
  }

  /** A primary's checkpoint completed: counted, logged, announced, its waiters resolved. */
  checkpointCompleted(m: CheckpointMeasurement): void {
    this.checkpoints.completed(m);
    this.roleLogger().debug({ seq: m.seq, reason: m.reason, pauseSeconds: m.pauseSeconds, pages: m.pages }, 'checkpoint complete');
    this.events.emit('checkpoint', m);
  }
}
