import type { Domain } from '@colo/domain';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import type { NodeRole, RequestableReason } from '../statechart/types.js';
import type { PeerLink, ReadRingStats } from '../transport/index.js';
import type { ArbitrationObserver } from './arbitration.js';
import { NodeContext, type ColoNodeEvents } from './context.js';
import type { ColoNodeOptions } from './options.js';
import { PrimaryRole } from './primary-role.js';
import { SecondaryRole } from './secondary-role.js';
import { isProtectedState, nodeStatus, type NodeStatus, type SyncProgress } from './status.js';
import type { Transition } from './transitions.js';

export type { ColoNodeEvents } from './context.js';
export type { NodeStatus } from './status.js';

/**
 * The node runtime: one protected guest's side of a pair. A small composition root: the facts both roles share
 * live in a NodeContext (each with one owner), and the role of the moment is an object of its own (PrimaryRole:
 * the listener, the attached secondary, the engine sending checkpoints; SecondaryRole: the link to the primary,
 * the engine applying them). A secondary's promotion hands over a PrimaryRole; the node stays the same object
 * (role() changes, onTransition keeps reporting).
 */
export class ColoNode {
  private readonly ctx: NodeContext;
  private current: PrimaryRole | SecondaryRole;
  /** The secondary role a promotion ended (its machine reached its final state; stopped with the node). */
  private former: SecondaryRole | undefined;
  private started = false;

  constructor(options: ColoNodeOptions) {
    validate(options);
    this.ctx = new NodeContext(options);
    this.current = options.role === 'primary' ? new PrimaryRole(this.ctx) : this.secondaryRole();
  }

  private secondaryRole(): SecondaryRole {
    const role = new SecondaryRole(this.ctx, (primary) => {
      this.former = role;
      this.current = primary;
    });
    return role;
  }

  // ------------------------------------------------------------------------------------------ public API

  get nodeId(): string {
    return this.ctx.o.nodeId;
  }
  /** Main-stream bytes this node has received as a secondary, over every link so far (for metrics). */
  get replicationBytesReceived(): number {
    return this.ctx.streamBytesReceived;
  }
  /**
   * Where the socket reads of this node's replication links went as a secondary (reused memory, fresh memory,
   * copied), over every link so far: totals that only grow (for metrics).
   */
  get replicationReads(): Readonly<ReadRingStats> {
    const t = this.ctx.endedLinkReads;
    const live = this.current instanceof SecondaryRole ? this.current.liveReads : undefined;
    if (!live) return { ...t };
    return { ringReads: t.ringReads + live.ringReads, fallbackReads: t.fallbackReads + live.fallbackReads, copiedReads: t.copiedReads + live.copiedReads };
  }
  get role(): NodeRole {
    return this.ctx.role;
  }
  get epoch(): number {
    return this.ctx.epoch;
  }
  /** The guest this node runs or replicates into (a secondary's exists once the primary described it). */
  get domain(): Domain | undefined {
    return this.ctx.guest;
  }
  /**
   * The replication link to the peer while there is one (primary: the attached secondary's; secondary: the one
   * it dialled). For diagnostics and fault injection (transport/faults.ts); the node alone sends on it.
   */
  get replicationLink(): PeerLink | undefined {
    return this.current.replicationLink;
  }
  /** Primary: the initial synchronisation of a secondary while it runs; null otherwise. */
  get syncProgress(): SyncProgress | null {
    return this.current instanceof PrimaryRole ? this.current.syncProgress : null;
  }
  /** The channels the peer has a link on now ('replication', 'proxy'): none without a peer. */
  get linksUp(): readonly string[] {
    return this.current.peerChannels;
  }
  /** Where this node listens for a secondary, once it does. */
  get listenUrl(): string | undefined {
    return this.current instanceof PrimaryRole ? this.current.listenUrl : undefined;
  }

  async start(): Promise<void> {
    if (this.started) throw new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, 'the node was already started');
    this.started = true;
    this.ctx.arbitration.startChecking();
    await this.current.start();
  }

  /** Stops replication: closes links and the listener, releases the lease. Does not destroy the guest. */
  async stop(): Promise<void> {
    const ctx = this.ctx;
    if (ctx.stopped) return;
    ctx.stopped = true;
    await this.former?.stop();
    await this.current.stop();
    await ctx.arbitration.close();
    ctx.checkpoints.stopped();
  }

  /** Every state change of this node's statechart, with role and epoch. Returns an unsubscribe function. */
  onTransition(cb: (t: Transition) => void): () => void {
    this.ctx.transitionListeners.add(cb);
    return () => this.ctx.transitionListeners.delete(cb);
  }

  on<K extends keyof ColoNodeEvents>(event: K, cb: (...args: ColoNodeEvents[K]) => void): () => void {
    this.ctx.events.on(event, cb as never);
    return () => this.ctx.events.off(event, cb as never);
  }

  /**
   * Asks the primary for a checkpoint. Resolves with its measurement when it completes (Remus with acks: when
   * the secondary acknowledged it). Requests made during a checkpoint coalesce into the next one. Rejects with
   * COLO_UNPROTECTED when no secondary is attached, or when it is dropped before the checkpoint completes.
   */
  requestCheckpoint(reason: RequestableReason): Promise<CheckpointMeasurement> {
    if (!(this.current instanceof PrimaryRole)) {
      return Promise.reject(new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, 'only an active primary takes checkpoints'));
    }
    return this.current.requestCheckpoint(reason);
  }

  /**
   * Resolves when checkpoint `seq` (or a later one) has completed: in Remus with the checkpoint-ack extension,
   * when the secondary acknowledged holding it. The output path releases an epoch's output on this.
   */
  whenCheckpointed(seq: number): Promise<CheckpointMeasurement> {
    return this.ctx.checkpoints.when(seq);
  }

  /** The sequence number of the last completed (acknowledged) checkpoint. */
  get lastCompletedCheckpoint(): number {
    return this.ctx.checkpoints.seq;
  }

  /**
   * Operator failover. On a synchronised secondary: promote now. On a primary: stop acting as primary so the
   * secondary takes over. Rejects with COLO_NOT_SYNCHRONISED on a secondary without a complete checkpoint.
   */
  failover(): Promise<void> {
    if (this.current instanceof PrimaryRole) {
      this.current.failover();
      return Promise.resolve();
    }
    return this.current.failover();
  }

  /**
   * Primary: the secondary is lost for a reason found outside the replication link (its proxy link ended or
   * sent garbage): the same outcome as a lost replication link (continue unprotected).
   */
  dropSecondary(reason: string): void {
    if (this.current instanceof PrimaryRole) this.current.dropSecondary(reason);
  }

  /** Secondary: the primary is lost for a reason found outside the replication link: close it (failover rules apply). */
  dropPrimary(reason: string): void {
    if (this.current instanceof SecondaryRole) this.current.dropPrimary(reason);
  }

  /** status().role === 'primary' && status().protected, without building the status (asked at every transition). */
  get isProtectedPrimary(): boolean {
    return this.current instanceof PrimaryRole && !this.ctx.blackhole && isProtectedState('primary', this.current.state);
  }

  status(): NodeStatus {
    const ctx = this.ctx;
    const r = this.current;
    return nodeStatus({
      nodeId: ctx.o.nodeId,
      role: ctx.role,
      state: r.state,
      mode: ctx.o.mode,
      epoch: ctx.epoch,
      blackhole: ctx.blackhole,
      peer: r.peerAddress,
      listening: r instanceof PrimaryRole ? (r.listenUrl ?? null) : null,
      lastCheckpoint: ctx.checkpoints.last,
      checkpoints: ctx.checkpoints.counts,
      lastError: ctx.lastError,
      sync: this.syncProgress,
      arbiter: ctx.arbitration.status(),
    });
  }

  /** The arbiter's answers, reachability and waits, for metrics and status. Returns an unsubscribe function. */
  onArbiter(observer: ArbitrationObserver): () => void {
    return this.ctx.arbitration.observe(observer);
  }
  /** Which arbiter decides this node's role changes. */
  get arbiterKind(): string {
    return this.ctx.arbitration.kind;
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
  if (o.remus?.blackhole && (o.role !== 'primary' || o.mode !== 'remus')) bad('blackhole mode is for a Remus primary (a COLO secondary runs its own guest: there is no blackhole for it)');
  if (o.epoch !== undefined && (!Number.isSafeInteger(o.epoch) || o.epoch < 0)) bad('epoch must be a non-negative integer');
  if (o.replication.maxBandwidth !== undefined && !(o.replication.maxBandwidth > 0)) bad('replication.maxBandwidth must be a positive number of bytes per second');
  for (const [k, v] of Object.entries(o.checkpoint ?? {})) {
    if (k.startsWith('precopy')) {
      if (!(Number.isInteger(v) && v >= 0)) bad(`checkpoint.${k} must be a non-negative integer`);
    } else if (!(typeof v === 'number' && v > 0)) bad(`checkpoint.${k} must be a positive number of ms`);
  }
}
