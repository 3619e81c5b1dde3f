import { EventEmitter } from 'node:events';
import type { Domain } from '@colo/domain';
import pino, { type Logger } from 'pino';
import { createActor, type Actor } from 'xstate';
import { noArbiter } from '../arbiter/none.js';
import { Arbitration, type ArbitrationObserver, type ArbitrationStatus } from './arbitration.js';
import { checkPrimaryEpoch, primaryMustStepDown } from '../epoch.js';
import { asCoordinatorError, CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { ALL_EXTENSIONS, Extension } from '../engine/extensions.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import { DEFAULT_PRECOPY, PrimaryCheckpointEngine, type PrecopyLimits } from '../engine/primary-engine.js';
import type { GuestHooks } from '../engine/guest-hooks.js';
import { SecondaryCheckpointEngine, type AppliedCheckpointTiming } from '../engine/secondary-engine.js';
import { bindPrimaryEffects, bindSecondaryEffects } from '../statechart/bind.js';
import type { PrimaryContext, PrimaryEvent } from '../statechart/primary.js';
import type { SecondaryEvent } from '../statechart/secondary.js';
import { DEFAULT_TIMINGS, REQUESTABLE_REASONS, type CheckpointReason, type NodeRole, type RequestableReason } from '../statechart/types.js';
import {
  DEFAULT_HEARTBEAT,
  LinkErrorCode,
  PROTOCOL_VERSION,
  wsNetwork,
  type Hello,
  type LinkRefusal,
  type PeerLink,
  type PeerServer,
  type ReadRingStats,
} from '../transport/index.js';
import type { ColoNodeOptions } from './options.js';
import { BlackholeLink } from './blackhole-link.js';
import { Throttle } from '../transport/throttle.js';
import { observeTransitions, stateName, type Transition } from './transitions.js';
import { childLogger } from '../observability/logger.js';

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
  sync: { round: number; pagesSent: number; totalPages: number } | null;
  /** The arbiter: kind, reachable, a request waiting, the last decision. */
  arbiter: ArbitrationStatus;
}

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
}

interface Waiter {
  seq: number;
  resolve: (m: CheckpointMeasurement) => void;
  reject: (e: Error) => void;
}

/**
 * The node runtime: one protected guest's side of a pair. Wires a Domain, the replication link (the primary
 * listens, the secondary dials), the role's statechart and the checkpoint engine. A secondary that takes over
 * becomes a primary in the same object (role() changes, onTransition keeps reporting).
 */
export class ColoNode {
  private readonly o: ColoNodeOptions;
  private readonly log: Logger;
  /** The node's logger without a component: each part (transport, engine) binds its own. */
  private readonly baseLog: Logger;
  private streamBytesReceived = 0;
  /** Socket reads of the replication links that have ended (replicationReads adds the current one's live). */
  private readonly endedLinkReads: ReadRingStats = { ringReads: 0, fallbackReads: 0, copiedReads: 0 };
  /** The secondary's current replication link (its reads are not yet in endedLinkReads). */
  private readingLink: PeerLink | undefined;
  private readonly arbitration: Arbitration;
  private readonly events = new EventEmitter<ColoNodeEvents>();
  private readonly transitionListeners = new Set<(t: Transition) => void>();
  private currentRole: NodeRole;
  private epochValue: number;
  private primaryActor: Actor<ReturnType<typeof bindPrimaryEffects>> | undefined;
  private secondaryActor: Actor<ReturnType<typeof bindSecondaryEffects>> | undefined;
  private server: PeerServer | undefined;
  private link: PeerLink | undefined;
  /** Bumped at every attach/drop: events of an older link are ignored. */
  private linkGeneration = 0;
  private primaryEngine: PrimaryCheckpointEngine | undefined;
  private secondaryEngine: SecondaryCheckpointEngine | undefined;
  private guest: Domain | undefined;
  private waiters: Waiter[] = [];
  private completedSeq = 0;
  private lastCheckpoint: CheckpointMeasurement | null = null;
  private counts: Record<CheckpointReason, number> = { initial: 0, miscompare: 0, stale: 0, periodic: 0, manual: 0, output_bound: 0 };
  private lastError: CoordinatorError | null = null;
  private stopped = false;
  private started = false;
  private readonly precopy: PrecopyLimits;
  private failoverWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(options: ColoNodeOptions) {
    validate(options);
    this.o = options;
    this.currentRole = options.role;
    this.epochValue = options.epoch ?? 0;
    this.precopy = { ...DEFAULT_PRECOPY, ...options.precopy };
    this.baseLog = childLogger(options.logger ?? pino({ level: 'info' }), { node: options.nodeId });
    this.arbitration = new Arbitration(options.arbiter ?? noArbiter(), childLogger(this.baseLog, { component: 'arbiter' }));
    this.log = childLogger(this.baseLog, { component: 'replication' });
    this.guest = options.domain;
  }

  // ------------------------------------------------------------------------------------------ public API

  get nodeId(): string {
    return this.o.nodeId;
  }
  /** Main-stream bytes this node has received as a secondary, over every link so far (for metrics). */
  get replicationBytesReceived(): number {
    return this.streamBytesReceived;
  }
  /**
   * Where the socket reads of this node's replication links went as a secondary (reused memory, fresh memory,
   * copied), over every link so far: totals that only grow (for metrics).
   */
  get replicationReads(): Readonly<ReadRingStats> {
    const live = this.readingLink?.readRingStats;
    const t = this.endedLinkReads;
    if (!live) return { ...t };
    return { ringReads: t.ringReads + live.ringReads, fallbackReads: t.fallbackReads + live.fallbackReads, copiedReads: t.copiedReads + live.copiedReads };
  }
  get role(): NodeRole {
    return this.currentRole;
  }
  get epoch(): number {
    return this.epochValue;
  }
  /** The guest this node runs or replicates into (a secondary's exists once the primary described it). */
  get domain(): Domain | undefined {
    return this.guest;
  }
  /** Every suspend and resume of the guest, reported as the suspending/resumed events (GuestHooks). */
  private readonly guestHooks: GuestHooks = {
    suspending: (linkIndex) => this.events.emit('suspending', linkIndex),
    resumed: () => this.events.emit('resumed'),
  };

  /** A suspension that takes no checkpoint (a step-down, a failed promotion, a guest created running). */
  private async suspendGuest(): Promise<void> {
    this.guestHooks.suspending(undefined);
    await this.guest!.suspend();
  }

  private async resumeGuest(): Promise<void> {
    await this.guest!.resume();
    this.guestHooks.resumed();
  }

  /**
   * The replication link to the peer while there is one (primary: the attached secondary's; secondary: the one
   * it dialled). For diagnostics and fault injection (transport/faults.ts); the node alone sends on it.
   */
  get replicationLink(): PeerLink | undefined {
    return this.link;
  }
  /** Where this node listens for a secondary, once it does. */
  get listenUrl(): string | undefined {
    return this.server?.url;
  }

  async start(): Promise<void> {
    if (this.started) throw new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, 'the node was already started');
    this.started = true;
    this.arbitration.startChecking();
    if (this.currentRole === 'primary') await this.startPrimary();
    else await this.startSecondary();
  }

  /** Stops replication: closes links and the listener, releases the lease. Does not destroy the guest. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // An actor that reached its final state (fenced, halted, promoted away) takes no more events.
    for (const actor of [this.primaryActor, this.secondaryActor]) if (actor?.getSnapshot().status === 'active') actor.send({ type: 'STOP' });
    this.primaryActor?.stop();
    this.secondaryActor?.stop();
    this.link?.close('node stopped');
    this.link = undefined;
    await this.primaryEngine?.abort();
    await this.secondaryEngine?.idle();
    await this.server?.close();
    this.server = undefined;
    await this.arbitration.close();
    this.rejectWaiters(new CoordinatorError(CoordinatorErrorCode.STOPPED, 'node stopped'));
  }

  /** Every state change of this node's statechart, with role and epoch. Returns an unsubscribe function. */
  onTransition(cb: (t: Transition) => void): () => void {
    this.transitionListeners.add(cb);
    return () => this.transitionListeners.delete(cb);
  }

  on<K extends keyof ColoNodeEvents>(event: K, cb: (...args: ColoNodeEvents[K]) => void): () => void {
    this.events.on(event, cb as never);
    return () => this.events.off(event, cb as never);
  }

  /**
   * Asks the primary for a checkpoint. Resolves with its measurement when it completes (Remus with acks: when
   * the secondary acknowledged it). Requests made during a checkpoint coalesce into the next one. Rejects with
   * COLO_UNPROTECTED when no secondary is attached, or when it is dropped before the checkpoint completes.
   */
  requestCheckpoint(reason: RequestableReason): Promise<CheckpointMeasurement> {
    if (!REQUESTABLE_REASONS.includes(reason)) {
      return Promise.reject(new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, `unknown checkpoint reason '${String(reason)}'`));
    }
    const actor = this.primaryActor;
    if (this.currentRole !== 'primary' || !actor || this.stopped) {
      return Promise.reject(new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, 'only an active primary takes checkpoints'));
    }
    const snap = actor.getSnapshot();
    if (snap.status !== 'active' || snap.matches('unprotected') || snap.matches('deciding')) {
      return Promise.reject(new CoordinatorError(CoordinatorErrorCode.UNPROTECTED, 'no synchronised secondary: nothing to checkpoint to'));
    }
    const seq = snap.context.seq + 1;
    const p = new Promise<CheckpointMeasurement>((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
    actor.send({ type: 'CHECKPOINT_REQUESTED', reason });
    return p;
  }

  /**
   * Resolves when checkpoint `seq` (or a later one) has completed: in Remus with the checkpoint-ack extension,
   * when the secondary acknowledged holding it. The output path releases an epoch's output on this.
   */
  whenCheckpointed(seq: number): Promise<CheckpointMeasurement> {
    if (this.completedSeq >= seq && this.lastCheckpoint) return Promise.resolve(this.lastCheckpoint);
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  /** The sequence number of the last completed (acknowledged) checkpoint. */
  get lastCompletedCheckpoint(): number {
    return this.completedSeq;
  }

  /**
   * Operator failover. On a synchronised secondary: promote now. On a primary: stop acting as primary so the
   * secondary takes over. Rejects with COLO_NOT_SYNCHRONISED on a secondary without a complete checkpoint.
   */
  failover(): Promise<void> {
    if (this.currentRole === 'primary') {
      this.primaryActor?.send({ type: 'FAILOVER' });
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      this.failoverWaiter = { resolve, reject };
      this.secondaryActor?.send({ type: 'FAILOVER' });
    });
  }

  /**
   * Primary: the secondary is lost for a reason found outside the replication link (its proxy link ended or
   * sent garbage): the same outcome as a lost replication link (continue unprotected).
   */
  dropSecondary(reason: string): void {
    if (this.currentRole !== 'primary' || !this.link) return;
    this.primaryActor?.send({ type: 'SECONDARY_LOST', error: new CoordinatorError(CoordinatorErrorCode.PEER_LOST, reason) });
  }

  /** Secondary: the primary is lost for a reason found outside the replication link: close it (failover rules apply). */
  dropPrimary(reason: string): void {
    if (this.currentRole !== 'secondary' || !this.link) return;
    this.link.close(reason);
  }

  /** status().role === 'primary' && status().protected, without building the status (asked at every transition). */
  get isProtectedPrimary(): boolean {
    return this.currentRole === 'primary' && !this.o.blackhole && isProtectedState('primary', this.currentState());
  }

  /** The current role's state name ('not-started' before its machine exists). */
  private currentState(): string {
    const snap = this.currentRole === 'primary' ? this.primaryActor?.getSnapshot() : this.secondaryActor?.getSnapshot();
    return snap ? stateName(snap.value) : 'not-started';
  }

  status(): NodeStatus {
    const state = this.currentState();
    const isProtected = !this.o.blackhole && isProtectedState(this.currentRole, state);
    const lc = this.lastCheckpoint;
    return {
      nodeId: this.o.nodeId,
      role: this.currentRole,
      state,
      mode: this.o.mode,
      epoch: this.epochValue,
      protected: isProtected,
      blackhole: this.o.blackhole === true,
      peer: this.link ? this.link.remoteAddress : null,
      listening: this.server?.url ?? null,
      lastCheckpoint: lc
        ? { seq: lc.seq, reason: lc.reason, at: lc.at, durationSeconds: lc.durationSeconds, pauseSeconds: lc.pauseSeconds, pages: lc.pages, bytes: lc.bytes }
        : null,
      checkpoints: { ...this.counts },
      lastError: this.lastError ? { code: this.lastError.code, message: this.lastError.message } : null,
      sync: this.currentRole === 'primary' && this.primaryEngine?.syncProgress ? { ...this.primaryEngine.syncProgress } : null,
      arbiter: this.arbitration.status(),
    };
  }

  // ------------------------------------------------------------------------------------------ shared

  private offeredExtensions(): string[] {
    return [...(this.o.extensions ?? ALL_EXTENSIONS)];
  }

  private hello(role: NodeRole): Hello {
    return {
      protocol: PROTOCOL_VERSION,
      channel: 'replication',
      nodeId: this.o.nodeId,
      role,
      mode: this.o.mode,
      epoch: this.epochValue,
      extensions: this.offeredExtensions(),
    };
  }

  /** The logger bound to the current role and epoch, made again only when either changes. */
  private roleLogger(): Logger {
    const r = this.roleLog;
    if (r !== undefined && r.role === this.currentRole && r.epoch === this.epochValue) return r.logger;
    // A pino child serialises its bindings when made: one per transition was ~60 us of every checkpoint.
    const logger = this.log.child({ role: this.currentRole, epoch: this.epochValue });
    this.roleLog = { role: this.currentRole, epoch: this.epochValue, logger };
    return logger;
  }
  private roleLog: { role: string; epoch: number; logger: Logger } | undefined;

  private reportTransition(t: Transition): void {
    // Steps inside the protected/synchronised state repeat at every checkpoint (5 a second in Remus): debug.
    const routine = (t.from.startsWith('protected.') && t.to.startsWith('protected.')) || (t.from.startsWith('synchronised.') && t.to.startsWith('synchronised.'));
    const level = t.to === 'fenced' || t.to === 'halted' || t.to === 'unprotected' ? 'warn' : routine ? 'debug' : 'info';
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

  private rejectWaiters(error: Error): void {
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x.reject(error);
  }

  private recordCheckpoint(m: CheckpointMeasurement): void {
    this.completedSeq = Math.max(this.completedSeq, m.seq);
    this.lastCheckpoint = m;
    this.counts[m.reason]++;
    this.roleLogger().debug({ seq: m.seq, reason: m.reason, pauseSeconds: m.pauseSeconds, pages: m.pages }, 'checkpoint complete');
    this.events.emit('checkpoint', m);
    const keep: Waiter[] = [];
    for (const w of this.waiters) (w.seq <= m.seq ? w.resolve(m) : keep.push(w));
    this.waiters = keep;
  }

  // ------------------------------------------------------------------------------------------ primary

  /** The arbiter's answers, reachability and waits, for metrics and status. Returns an unsubscribe function. */
  onArbiter(observer: ArbitrationObserver): () => void {
    return this.arbitration.observe(observer);
  }
  /** Which arbiter decides this node's role changes. */
  get arbiterKind(): string {
    return this.arbitration.kind;
  }

  /**
   * Acts as primary. A node starting as primary registers its epoch with the arbiter first (refused when it is
   * a stale former primary); a promoted secondary has already won its epoch (`won`).
   */
  private async startPrimary(lastSeq = 0, won = false): Promise<void> {
    if (!this.guest) throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, 'a primary needs options.domain');
    if (!won) this.epochValue = await this.arbitration.register(this.o.nodeId, this.epochValue);
    if (this.stopped) return;
    const machine = bindPrimaryEffects(this.primaryEffects());
    const actor = createActor(machine, {
      input: { nodeId: this.o.nodeId, mode: this.o.mode, epoch: this.epochValue, timings: this.o.timings, lastSeq },
    });
    observeTransitions(actor, 'primary', () => this.epochValue, (t) => this.reportTransition(t));
    this.primaryActor = actor;
    actor.start();
    if (this.o.blackhole) {
      this.roleLogger().warn('blackhole mode: checkpoints go nowhere; this guest is NOT protected');
      this.attachSecondary(new BlackholeLink(this.hello('primary')));
      return;
    }
    const listen = this.o.replication.listen;
    if (!listen) {
      this.roleLogger().warn('no replication.listen address: running unprotected, no secondary can join');
      return;
    }
    this.server = await (this.o.network ?? wsNetwork).listen({
      host: listen.host,
      port: listen.port,
      security: this.o.security,
      heartbeat: this.o.heartbeat ?? DEFAULT_HEARTBEAT,
      maxPayload: this.o.replication.maxFrameBytes,
      hello: (peer) => this.answerSecondaryHello(peer),
      onLink: (link) => (link.peerHello.channel === 'replication' ? this.attachSecondary(link) : this.o.onSideLink?.(link)),
      onRefused: (error, remote) => this.roleLogger().warn({ err: error, remote }, 'refused a peer'),
      logger: childLogger(this.baseLog, { component: 'transport' }),
    });
    this.roleLogger().info({ url: this.server.url }, 'listening for a secondary');
  }

  private answerSecondaryHello(peer: Hello): Hello | LinkRefusal {
    const snap = this.primaryActor?.getSnapshot();
    const side = peer.channel !== 'replication';
    if (side && !this.o.onSideLink) return { refuse: `channel ${peer.channel} is not served here`, code: LinkErrorCode.REFUSED };
    if (peer.role !== 'secondary') return { refuse: `a ${peer.role} cannot join a primary`, code: LinkErrorCode.REFUSED };
    if (peer.mode !== this.o.mode) return { refuse: `this pair runs ${this.o.mode}, the peer asked for ${peer.mode}`, code: LinkErrorCode.REFUSED };
    if (primaryMustStepDown(this.epochValue, peer.epoch)) {
      // Someone was promoted after us: we are the stale side.
      this.primaryActor?.send({ type: 'HIGHER_EPOCH_SEEN', epoch: peer.epoch });
      return { refuse: `this primary is at epoch ${this.epochValue}, the peer has seen ${peer.epoch}: stepping down`, code: LinkErrorCode.REFUSED };
    }
    if (!snap || snap.status !== 'active' || !snap.matches('unprotected')) {
      return { refuse: 'this primary already has a secondary (or is not accepting one)', code: LinkErrorCode.REFUSED };
    }
    return side ? { ...this.hello('primary'), channel: peer.channel } : this.hello('primary');
  }

  private attachSecondary(link: PeerLink): void {
    const actor = this.primaryActor;
    if (!actor || this.stopped || !actor.getSnapshot().matches('unprotected') || this.link) {
      link.close('not accepting a secondary now');
      return;
    }
    const generation = ++this.linkGeneration;
    const current = () => generation === this.linkGeneration;
    this.link = link;
    const emit = (e: PrimaryEvent) => {
      if (current()) actor.send(e);
    };
    // replication.max_bandwidth: every main-stream byte waits for its turn (heartbeats and the back channel do not).
    const limit = this.o.replication.maxBandwidth ? new Throttle(this.o.replication.maxBandwidth) : undefined;
    const send = limit
      ? async (b: Uint8Array) => {
          await limit.take(b.byteLength);
          return link.send(b);
        }
      : (b: Uint8Array) => link.send(b);
    const sendPieces = limit
      ? async (p: readonly Uint8Array[]) => {
          await limit.take(p.reduce((n, x) => n + x.byteLength, 0));
          return link.sendPieces!(p);
        }
      : (p: readonly Uint8Array[]) => link.sendPieces!(p);
    const engine = new PrimaryCheckpointEngine({
      domain: this.guest!,
      send,
      // Links that can write several buffers as one frame get PAGE_DATA as views of guest memory (no copy).
      ...(link.sendPieces && link.whenWritten
        ? {
            sendPieces,
            whenWritten: () => link.whenWritten!(),
          }
        : {}),
      mode: this.o.mode,
      extensions: link.extensions,
      precopy: this.precopy,
      emit,
      onCheckpointWritten: (seq, d) => this.events.emit('written', seq, d),
      guestHooks: this.guestHooks,
      logger: childLogger(this.baseLog, { component: 'engine' }),
    });
    this.primaryEngine = engine;
    link.onData((bytes) => {
      if (current()) engine.receiveBackChannel(bytes);
    });
    link.onClose((error) => {
      emit({
        type: 'SECONDARY_LOST',
        error: asCoordinatorError(error ?? 'closed locally', CoordinatorErrorCode.PEER_LOST, 'the replication link to the secondary ended'),
      });
    });
    this.roleLogger().info({ peer: link.peerHello.nodeId, remote: link.remoteAddress, extensions: link.extensions }, 'secondary attached');
    actor.send({ type: 'SECONDARY_CONNECTED', peer: `${link.peerHello.nodeId}@${link.remoteAddress}`, ack: link.extensions.includes(Extension.CHECKPOINT_ACK) });
  }

  private detachSecondary(reason: string): PrimaryCheckpointEngine | undefined {
    this.linkGeneration++;
    const engine = this.primaryEngine;
    this.primaryEngine = undefined;
    const link = this.link;
    this.link = undefined;
    link?.close(reason);
    return engine;
  }

  private primaryEffects() {
    const engine = () => this.primaryEngine;
    const begin = (ctx: PrimaryContext) => {
      if (ctx.current) engine()?.beginCheckpoint(ctx.current.seq, ctx.current.reason, ctx.linkIndex);
    };
    return {
      startLiveMigration: (ctx: PrimaryContext) => {
        begin(ctx);
        engine()?.startLiveMigration();
      },
      sendNewCheckpoint: (ctx: PrimaryContext) => {
        begin(ctx);
        engine()?.sendNewCheckpoint();
      },
      suspendAndSendCheckpoint: (ctx: PrimaryContext, dirty: readonly number[]) => {
        begin(ctx);
        engine()?.suspendAndSendCheckpoint(dirty);
      },
      resumeGuest: () => engine()?.resumeGuest(),
      checkpointCompleted: () => {
        const e = engine();
        void e?.completeCheckpoint().then((m) => m && this.recordCheckpoint(m));
      },
      protectionStarted: (ctx: PrimaryContext) => {
        if (this.o.blackhole) this.roleLogger().warn({ rounds: engine()?.precopyRounds }, 'blackhole: the first checkpoint went nowhere, as every one will: NOT protected');
        else this.roleLogger().info({ rounds: engine()?.precopyRounds }, 'protected: the secondary holds a complete checkpoint');
        this.events.emit('protected');
        this.markProtected(ctx.epoch);
      },
      decide: (ctx: PrimaryContext) => this.decide('primary', ctx.epoch),
      continueAlone: (ctx: PrimaryContext) => {
        this.roleLogger().warn('won the epoch: serving unprotected, held output released');
        this.events.emit('continuing', ctx.epoch);
      },
      dropSecondary: (_ctx: PrimaryContext, error: CoordinatorError) => {
        if (!this.link && !this.primaryEngine) return;
        this.lastError = error;
        this.roleLogger().warn({ err: error }, 'secondary lost: output held until the arbiter decides');
        const e = this.detachSecondary(error.message);
        this.rejectWaiters(new CoordinatorError(CoordinatorErrorCode.UNPROTECTED, `the secondary was dropped: ${error.message}`, { cause: error }));
        // Whatever the engine was doing, the guest must run again (it may be suspended mid-checkpoint).
        void (e?.abort() ?? Promise.resolve()).then(async () => {
          if (this.guest?.state === 'suspended' && this.currentRole === 'primary' && !this.isFenced()) await this.resumeGuest();
        });
        this.events.emit('unprotected', error);
        if (error.code !== CoordinatorErrorCode.STOPPED) this.events.emit('deciding', error);
      },
      refuseRequest: () => {
        this.rejectWaiters(new CoordinatorError(CoordinatorErrorCode.UNPROTECTED, 'no synchronised secondary: nothing to checkpoint to'));
      },
      stepDown: (_ctx: PrimaryContext, error: CoordinatorError) => {
        this.lastError = error;
        this.roleLogger().warn({ err: error }, 'stepping down: no longer acting as primary');
        const e = this.detachSecondary(error.message);
        this.rejectWaiters(error);
        void (async () => {
          await e?.abort();
          // A primary that is not the active side must produce no more output: its guest stays suspended (a
          // guest that is gone cannot be, and produces nothing either).
          if (this.guest?.state === 'running') {
            await this.suspendGuest().catch((err: unknown) => this.roleLogger().warn({ err }, 'the guest could not be suspended while stepping down'));
          }
          await this.server?.close();
          this.server = undefined;
        })();
        this.events.emit('fenced', error);
      },
    };
  }

  /**
   * Asks the arbiter for the epoch after `epoch` (the one the pair shared) and tells the role's machine the
   * answer. The machine waits in `deciding` for as long as that takes.
   */
  private decide(role: NodeRole, epoch: number): void {
    const send = (e: { type: 'DECISION_WON'; epoch: number } | { type: 'DECISION_LOST'; error: CoordinatorError }) => {
      if (this.stopped || this.currentRole !== role) return;
      if (role === 'primary') this.primaryActor?.send(e);
      else this.secondaryActor?.send(e);
    };
    this.arbitration.decide(this.o.nodeId, role, epoch).then(
      (d) => {
        if (!d) return;
        if (d.won) {
          this.epochValue = Math.max(this.epochValue, d.epoch);
          send({ type: 'DECISION_WON', epoch: d.epoch });
        } else {
          const holder = d.current ? `${d.current.holder} holds epoch ${d.current.epoch}` : 'the pair has no record';
          send({
            type: 'DECISION_LOST',
            error: new CoordinatorError(
              CoordinatorErrorCode.DECISION_LOST,
              `the arbiter gave epoch ${epoch + 1} to the other node (${holder}): this node ${role === 'primary' ? 'stops serving' : 'discards its replica'}`,
            ),
          });
        }
      },
      (e: unknown) => this.roleLogger().error({ err: e }, 'arbiter request failed for good: staying in deciding'),
    );
  }

  /** Records the pair as protected at `epoch`; output waiting for it leaves on 'pairProtected'. */
  private markProtected(epoch: number): void {
    // Nothing backs a blackhole's checkpoints: the arbiter's record must never say this pair is protected. Its
    // output is released as the checkpoints complete (that is what blackhole mode measures).
    if (this.o.blackhole) {
      this.events.emit('pairProtected', epoch);
      return;
    }
    this.arbitration.markProtected(this.o.nodeId, epoch).then(
      (d) => {
        if (!d || this.stopped || this.currentRole !== 'primary' || this.epochValue !== epoch) return;
        if (d.won) this.events.emit('pairProtected', epoch);
        // This node's own later epoch (it lost the secondary and won the next epoch meanwhile): nothing to record.
        else if (d.current?.holder === this.o.nodeId) return;
        // The record moved on without this node: someone else won a later epoch.
        else this.primaryActor?.send({ type: 'HIGHER_EPOCH_SEEN', epoch: d.current?.epoch ?? epoch + 1 });
      },
      (e: unknown) => this.roleLogger().error({ err: e }, 'arbiter request failed for good: the pair is not recorded as protected'),
    );
  }

  private isFenced(): boolean {
    const s = this.primaryActor?.getSnapshot();
    return !!s && (s.matches('fenced') || s.matches('demoted'));
  }

  // ------------------------------------------------------------------------------------------ secondary

  private async startSecondary(): Promise<void> {
    const url = this.o.replication.peer;
    if (!url) throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, 'a secondary needs replication.peer (the primary URL)');
    const actor = createActor(bindSecondaryEffects(this.secondaryEffects()), {
      input: { nodeId: this.o.nodeId, mode: this.o.mode, epoch: this.epochValue, timings: this.o.timings },
    });
    observeTransitions(actor, 'secondary', () => this.epochValue, (t) => this.reportTransition(t));
    this.secondaryActor = actor;
    actor.start();
    let link: PeerLink;
    try {
      link = await (this.o.network ?? wsNetwork).connect({
        url,
        security: this.o.security,
        heartbeat: this.o.heartbeat ?? DEFAULT_HEARTBEAT,
        hello: this.hello('secondary'),
        timeoutMs: this.o.connectTimeoutMs,
        maxPayload: this.o.replication.maxFrameBytes,
        // The replication stream is read into reused memory (ReadRing): a 50,000-page checkpoint no longer
        // allocates 200 MB of read buffers for the collector (docs/performance.md, tenth round).
        reuseReadMemory: true,
        logger: childLogger(this.baseLog, { component: 'transport' }),
      });
      const peer = link.peerHello;
      if (peer.role !== 'primary' || peer.mode !== this.o.mode) {
        link.close('not a primary of this mode');
        throw new CoordinatorError(CoordinatorErrorCode.PEER_REFUSED, `the peer is a ${peer.mode} ${peer.role}, expected a ${this.o.mode} primary`);
      }
      checkPrimaryEpoch(peer.epoch, this.epochValue);
    } catch (e) {
      const error = asCoordinatorError(e, CoordinatorErrorCode.PEER_REFUSED, `could not join the primary at ${url}`);
      if (typeof (e as { close?: unknown })?.close === 'function') (e as PeerLink).close();
      actor.send({ type: 'PRIMARY_LOST', error });
      throw error;
    }
    this.attachPrimary(link);
  }

  private attachPrimary(link: PeerLink): void {
    const actor = this.secondaryActor!;
    const generation = ++this.linkGeneration;
    const current = () => generation === this.linkGeneration;
    this.link = link;
    this.epochValue = Math.max(this.epochValue, link.peerHello.epoch);
    const emit = (e: SecondaryEvent) => {
      if (current()) actor.send(e);
    };
    const engine = new SecondaryCheckpointEngine({
      mode: this.o.mode,
      extensions: link.extensions,
      send: (b) => link.send(b),
      hostGuest: (identity) => {
        if (!this.o.hostGuest) throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, 'a secondary needs options.hostGuest');
        const d = this.o.hostGuest(identity);
        this.guest = d;
        // Pages are written only into a guest that is not running.
        if (d.state === 'running') void this.suspendGuest();
        return d;
      },
      emit,
      onCheckpointApplied: (index, d, timing) => {
        this.completedSeq = index;
        this.lastCheckpoint = {
          seq: index,
          reason: index === 0 ? 'initial' : 'periodic',
          at: Date.now(),
          pauseSeconds: 0,
          durationSeconds: 0,
          phases: { suspend: 0, transfer: 0, resume: 0 },
          linkIndex: index,
          pages: 0,
          deltaPages: 0,
          resentPages: 0,
          bytes: 0,
        };
        this.events.emit('applied', index, d, timing);
      },
      guestHooks: this.guestHooks,
      maxRecordLength: this.o.maxRecordLength,
      stallTimeoutMs: this.o.timings?.stallTimeoutMs ?? DEFAULT_TIMINGS.stallTimeoutMs,
      logger: childLogger(this.baseLog, { component: 'engine' }),
    });
    this.secondaryEngine = engine;
    link.onData(
      (bytes) => {
        if (!current()) return;
        this.streamBytesReceived += bytes.length;
        engine.receive(bytes);
      },
      // The engine copies what it keeps once a record is whole: the link may hand it reused memory.
      { retainedBytes: () => engine.retainedBytes },
    );
    if (this.readingLink) this.endLinkReads(this.readingLink);
    this.readingLink = link;
    link.onClose((error) => {
      this.endLinkReads(link);
      emit({
        type: 'PRIMARY_LOST',
        error: asCoordinatorError(error ?? 'closed locally', CoordinatorErrorCode.PEER_LOST, 'the replication link to the primary ended'),
      });
    });
    this.roleLogger().info({ primary: link.peerHello.nodeId, remote: link.remoteAddress, extensions: link.extensions }, 'joined the primary');
    actor.send({ type: 'CONNECTED', peer: `${link.peerHello.nodeId}@${link.remoteAddress}`, epoch: link.peerHello.epoch, ack: link.extensions.includes(Extension.CHECKPOINT_ACK) });
  }

  /** A replication link's reads join the totals once (at its end, or when a newer link replaces it). */
  private endLinkReads(link: PeerLink): void {
    if (this.readingLink !== link) return;
    const r = link.readRingStats;
    if (r) {
      this.endedLinkReads.ringReads += r.ringReads;
      this.endedLinkReads.fallbackReads += r.fallbackReads;
      this.endedLinkReads.copiedReads += r.copiedReads;
    }
    this.readingLink = undefined;
  }

  private secondaryEffects() {
    const engine = () => this.secondaryEngine;
    const closeLink = (reason: string) => {
      this.linkGeneration++;
      const l = this.link;
      this.link = undefined;
      l?.close(reason);
    };
    return {
      suspendAndReportDirty: () => engine()?.suspendAndReportDirty(),
      applyCheckpoint: () => engine()?.applyCheckpoint(),
      readyAndResume: () => engine()?.readyAndResume(),
      acknowledge: (ctx: { applied: number }) => engine()?.acknowledge(ctx.applied),
      discardCheckpoint: () => engine()?.discard(),
      abandonPrimary: (_ctx: unknown, error: CoordinatorError) => {
        this.lastError = error;
        this.roleLogger().warn({ err: error }, 'primary lost: asking the arbiter before taking over');
        closeLink(error.message);
        this.events.emit('deciding', error);
      },
      decide: (ctx: { epoch: number }) => this.decide('secondary', ctx.epoch),
      promote: (ctx: { epoch: number }) => {
        const e = engine();
        void (async () => {
          await e?.idle();
          if (this.stopped) return;
          try {
            // The guest resumes on its last complete checkpoint (anything half-received was discarded), still as
            // a secondary's guest (its proxy sees the resume). A guest that cannot (a QEMU that does not start)
            // fails the promotion like anything below.
            if (this.guest?.state === 'suspended') await this.resumeGuest();
            this.epochValue = ctx.epoch;
            this.currentRole = 'primary';
            this.secondaryEngine = undefined;
            this.roleLogger().warn('promoted: acting as primary, unprotected'); // the role logger binds the new epoch
            await this.startPrimary(this.completedSeq, true);
            this.events.emit('promoted', ctx.epoch);
          } catch (err) {
            const ce = asCoordinatorError(err, CoordinatorErrorCode.PEER_LOST, 'promotion failed');
            this.lastError = ce;
            this.roleLogger().error({ err: ce }, 'promotion failed: not acting as primary');
            if (this.guest?.state === 'running') await this.suspendGuest();
            this.events.emit('fenced', ce);
          }
          this.failoverWaiter?.resolve();
          this.failoverWaiter = undefined;
        })();
      },
      standDown: (_ctx: unknown, error: CoordinatorError) => {
        this.lastError = error;
        this.roleLogger().error({ err: error }, 'the primary kept the epoch: discarding this replica');
        if (this.guest?.state === 'running') void this.suspendGuest();
        this.failoverWaiter?.reject(error);
        this.failoverWaiter = undefined;
        this.events.emit('fenced', error);
      },
      halt: (_ctx: unknown, error: CoordinatorError) => {
        this.lastError = error;
        closeLink(error.message);
        if (error.code !== CoordinatorErrorCode.STOPPED) this.roleLogger().error({ err: error }, 'secondary halted without taking over');
        this.events.emit('halted', error);
      },
      refuseFailover: (_ctx: unknown, error: CoordinatorError) => {
        this.failoverWaiter?.reject(error);
        this.failoverWaiter = undefined;
      },
    };
  }
}

function validate(o: ColoNodeOptions): void {
  const bad = (m: string) => {
    throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, m);
  };
  if (!o.nodeId) bad('nodeId is required');
  if (o.role !== 'primary' && o.role !== 'secondary') bad(`role must be primary or secondary, got '${String(o.role)}'`);
  if (o.mode !== 'colo' && o.mode !== 'remus') bad(`mode must be colo or remus, got '${String(o.mode)}'`);
  if (o.role === 'primary' && !o.domain) bad('a primary needs options.domain');
  if (o.role === 'secondary' && !o.hostGuest) bad('a secondary needs options.hostGuest');
  if (o.role === 'secondary' && !o.replication.peer) bad('a secondary needs replication.peer');
  if (o.blackhole && (o.role !== 'primary' || o.mode !== 'remus')) bad('blackhole mode is for a Remus primary (a COLO secondary runs its own guest: there is no blackhole for it)');
  if (o.epoch !== undefined && (!Number.isSafeInteger(o.epoch) || o.epoch < 0)) bad('epoch must be a non-negative integer');
  if (o.replication.maxBandwidth !== undefined && !(o.replication.maxBandwidth > 0)) bad('replication.maxBandwidth must be a positive number of bytes per second');
  for (const [k, v] of Object.entries(o.timings ?? {})) if (!(typeof v === 'number' && v > 0)) bad(`timings.${k} must be a positive number of ms`);
  for (const [k, v] of Object.entries(o.precopy ?? {})) if (!(Number.isInteger(v) && v >= 0)) bad(`precopy.${k} must be a non-negative integer`);
}

/** A primary is protected once it has a synchronised secondary; a secondary once it holds a checkpoint. */
function isProtectedState(role: NodeRole, state: string): boolean {
  return role === 'primary' ? state.startsWith('protected') : state.startsWith('synchronised');
}
