import { createActor, type Actor } from 'xstate';
import { primaryMustStepDown } from '../epoch.js';
import { asCoordinatorError, CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { Extension } from '../engine/extensions.js';
import { PrimaryCheckpointEngine } from '../engine/primary-engine.js';
import { bindPrimaryEffects } from '../statechart/bind.js';
import type { PrimaryContext, PrimaryEvent } from '../statechart/primary.js';
import { REQUESTABLE_REASONS, type RequestableReason } from '../statechart/types.js';
import { DEFAULT_HEARTBEAT, LinkErrorCode, type Hello, type LinkError, type LinkRefusal, type PeerLink, type PeerServer } from '../transport/index.js';
import { Throttle } from '../transport/throttle.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import { childLogger } from '../observability/logger.js';
import { BlackholeLink } from './blackhole-link.js';
import type { NodeContext } from './context.js';
import type { SyncProgress } from './status.js';
import { PAGE_SIZE } from '@colo/stream';
import { decide } from './decide.js';
import { Peer } from './peer.js';
import { observeTransitions, stateOf } from './transitions.js';

/**
 * The primary role: its statechart, the listener a secondary joins, the attached secondary's link and the
 * checkpoint engine feeding it. Made when a node starts as primary or a secondary is promoted; it ends with the
 * node (a fenced primary stays fenced until the process restarts).
 */
export class PrimaryRole {
  readonly kind = 'primary';
  private readonly ctx: NodeContext;
  private actor: Actor<ReturnType<typeof bindPrimaryEffects>> | undefined;
  private server: PeerServer | undefined;
  private link: PeerLink | undefined;
  /** The secondary joining or attached: its proxy link (first) and replication link, lost together. */
  private peer: Peer | undefined;
  /** Bumped at every attach/drop: events of an older link are ignored. */
  private linkGeneration = 0;
  private engine: PrimaryCheckpointEngine | undefined;

  constructor(ctx: NodeContext) {
    this.ctx = ctx;
  }

  /** The current state's name ('not-started' before the machine exists). */
  get state(): string {
    return stateOf(this.actor);
  }
  get peerAddress(): string | null {
    return this.link ? this.link.remoteAddress : null;
  }
  get replicationLink(): PeerLink | undefined {
    return this.link;
  }
  /** The channels the peer has a link on now. */
  get peerChannels(): string[] {
    return this.peer && !this.peer.lost ? this.peer.channels : [];
  }
  get listenUrl(): string | undefined {
    return this.server?.url;
  }
  get syncProgress(): SyncProgress | null {
    const p = this.engine?.syncProgress;
    if (!p) return null;
    return { round: p.round, pagesSent: p.pagesSent, totalPages: p.totalPages, bytesSent: p.pagesSent * PAGE_SIZE, seconds: (performance.now() - p.startedAt) / 1000 };
  }

  /**
   * Acts as primary. A node starting as primary registers its epoch with the arbiter first (refused when it is
   * a stale former primary); a promoted secondary has already won its epoch (`won`).
   */
  async start(lastSeq = 0, won = false): Promise<void> {
    const ctx = this.ctx;
    const o = ctx.o;
    if (!ctx.guest) throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, 'a primary needs options.domain');
    if (!won) ctx.epoch = await ctx.arbitration.register(o.nodeId, ctx.epoch);
    if (ctx.stopped) return;
    const actor = createActor(bindPrimaryEffects(this.effects()), {
      input: { nodeId: o.nodeId, mode: o.mode, epoch: ctx.epoch, timings: ctx.checkpoint, lastSeq },
    });
    observeTransitions(actor, 'primary', () => ctx.epoch, (t) => ctx.reportTransition(t));
    this.actor = actor;
    actor.start();
    if (ctx.blackhole) {
      ctx.roleLogger().warn('blackhole mode: checkpoints go nowhere; this guest is NOT protected');
      this.attachSecondary(new BlackholeLink(ctx.hello('primary')));
      return;
    }
    const listen = o.replication.listen;
    if (!listen) {
      ctx.roleLogger().warn('no replication.listen address: running unprotected, no secondary can join');
      return;
    }
    this.server = await ctx.network.listen({
      host: listen.host,
      port: listen.port,
      security: o.security,
      heartbeat: o.heartbeat ?? DEFAULT_HEARTBEAT,
      maxPayload: o.replication.maxFrameBytes,
      hello: (peer) => this.answerSecondaryHello(peer),
      onLink: (link) => this.peerLink(link),
      // The listener logs the refusal (code, remote address): the node counts it.
      onRefused: (error) => ctx.events.emit('linkRefused', error.code),
      logger: childLogger(ctx.baseLog, { component: 'transport' }),
    });
    ctx.roleLogger().info({ url: this.server.url }, 'listening for a secondary');
  }

  async stop(): Promise<void> {
    if (this.actor?.getSnapshot().status === 'active') this.actor.send({ type: 'STOP' });
    this.actor?.stop();
    this.link?.close('node stopped');
    this.link = undefined;
    this.peer?.drop('node stopped');
    await this.engine?.abort();
    await this.server?.close();
    this.server = undefined;
  }

  /** A checkpoint for `reason`; resolves when it completes (see ColoNode.requestCheckpoint). */
  requestCheckpoint(reason: RequestableReason): Promise<CheckpointMeasurement> {
    if (!REQUESTABLE_REASONS.includes(reason)) {
      return Promise.reject(new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, `unknown checkpoint reason '${String(reason)}'`));
    }
    const actor = this.actor;
    if (!actor || this.ctx.stopped) {
      return Promise.reject(new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, 'only an active primary takes checkpoints'));
    }
    const snap = actor.getSnapshot();
    if (snap.status !== 'active' || snap.matches('unprotected') || snap.matches('deciding')) {
      return Promise.reject(new CoordinatorError(CoordinatorErrorCode.UNPROTECTED, 'no synchronised secondary: nothing to checkpoint to'));
    }
    const p = this.ctx.checkpoints.when(snap.context.seq + 1);
    actor.send({ type: 'CHECKPOINT_REQUESTED', reason });
    return p;
  }

  /** Operator failover on a primary: stop acting as primary so that the secondary takes over. */
  failover(): void {
    this.actor?.send({ type: 'FAILOVER' });
  }

  /** The secondary is lost for a reason found outside its links (its proxy sent garbage, it never synchronised). */
  dropSecondary(reason: string): void {
    if (this.peer && !this.peer.lost) this.peer.drop(reason);
    else if (this.link) this.actor?.send({ type: 'SECONDARY_LOST', error: new CoordinatorError(CoordinatorErrorCode.PEER_LOST, reason) });
  }

  private answerSecondaryHello(peer: Hello): Hello | LinkRefusal {
    const ctx = this.ctx;
    const snap = this.actor?.getSnapshot();
    const side = peer.channel !== 'replication';
    if (side && !ctx.o.sideChannels?.some((c) => c.channel === peer.channel)) return { refuse: `channel ${peer.channel} is not served here`, code: LinkErrorCode.REFUSED };
    if (peer.role !== 'secondary') return { refuse: `a ${peer.role} cannot join a primary`, code: LinkErrorCode.REFUSED };
    if (peer.mode !== ctx.o.mode) return { refuse: `this pair runs ${ctx.o.mode}, the peer asked for ${peer.mode}`, code: LinkErrorCode.REFUSED };
    if (primaryMustStepDown(ctx.epoch, peer.epoch)) {
      // Someone was promoted after us: we are the stale side.
      this.actor?.send({ type: 'HIGHER_EPOCH_SEEN', epoch: peer.epoch });
      return { refuse: `this primary is at epoch ${ctx.epoch}, the peer has seen ${peer.epoch}: stepping down`, code: LinkErrorCode.REFUSED };
    }
    if (!snap || snap.status !== 'active' || !snap.matches('unprotected')) {
      return { refuse: 'this primary already has a secondary (or is not accepting one)', code: LinkErrorCode.REFUSED };
    }
    return side ? { ...ctx.hello('primary'), channel: peer.channel } : ctx.hello('primary');
  }

  /** A primary takes a secondary only while it has none (unprotected, no replication link attached). */
  private accepting(): boolean {
    const actor = this.actor;
    return !!actor && !this.ctx.stopped && actor.getSnapshot().matches('unprotected') && !this.link;
  }

  /**
   * A secondary's link arrived: the links of one secondary make one peer (its proxy link first, its replication
   * link after); a link of another node while one is joining is refused.
   */
  private peerLink(link: PeerLink): void {
    const ctx = this.ctx;
    const nodeId = link.peerHello.nodeId;
    if (!this.accepting()) {
      link.close('not accepting a secondary now');
      return;
    }
    const joining = this.peer && !this.peer.lost ? this.peer : undefined;
    if (joining && joining.nodeId !== nodeId) {
      link.close(`secondary ${joining.nodeId} is joining`);
      return;
    }
    // The same secondary again on a channel it already has: a new process of it; its old links are stale.
    if (joining?.link(link.peerHello.channel)) joining.drop('the secondary joined again');
    if (!this.peer || this.peer.lost) {
      const peer = new Peer(nodeId);
      this.peer = peer;
      peer.onLost((reason, error) => ctx.events.emit('peerLost', reason, error?.code ?? 'dropped'));
    }
    this.peer.add(link);
    if (link.peerHello.channel === 'replication') this.attachSecondary(link, this.peer);
    else ctx.o.onSideLink?.(link);
  }

  private attachSecondary(link: PeerLink, peer?: Peer): void {
    const ctx = this.ctx;
    const o = ctx.o;
    const actor = this.actor!;
    const generation = ++this.linkGeneration;
    const current = () => generation === this.linkGeneration;
    this.link = link;
    const emit = (e: PrimaryEvent) => {
      if (current()) actor.send(e);
    };
    // replication.max_bandwidth: every main-stream byte waits for its turn (heartbeats and the back channel do not).
    const limit = o.replication.maxBandwidth ? new Throttle(o.replication.maxBandwidth) : undefined;
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
      domain: ctx.guest!,
      send,
      // Links that can write several buffers as one frame get PAGE_DATA as views of guest memory (no copy).
      ...(link.sendPieces && link.whenWritten
        ? {
            sendPieces,
            whenWritten: () => link.whenWritten!(),
          }
        : {}),
      mode: o.mode,
      extensions: link.extensions,
      precopy: ctx.precopy,
      emit,
      onCheckpointWritten: (seq, d) => ctx.events.emit('written', seq, d),
      guestHooks: ctx.guestHooks,
      logger: childLogger(ctx.baseLog, { component: 'engine' }),
    });
    this.engine = engine;
    link.onData((bytes) => {
      if (current()) engine.receiveBackChannel(bytes);
    });
    // Any link of the secondary ending (or a drop) loses it. A blackhole has no peer: its link never ends.
    const lost = (reason: string, error: LinkError | null) =>
      emit({ type: 'SECONDARY_LOST', error: asCoordinatorError(error ?? reason, CoordinatorErrorCode.PEER_LOST, 'the secondary was lost') });
    if (peer) peer.onLost(lost);
    else link.onClose((error) => lost('closed locally', error));
    ctx.roleLogger().info({ peer: link.peerHello.nodeId, remote: link.remoteAddress, extensions: link.extensions }, 'secondary attached');
    actor.send({ type: 'SECONDARY_CONNECTED', peer: `${link.peerHello.nodeId}@${link.remoteAddress}`, ack: link.extensions.includes(Extension.CHECKPOINT_ACK) });
  }

  private detachSecondary(reason: string): PrimaryCheckpointEngine | undefined {
    this.linkGeneration++;
    const engine = this.engine;
    this.engine = undefined;
    const link = this.link;
    this.link = undefined;
    // The peer first: its loss carries this reason (the links' closes would only say they were closed).
    this.peer?.drop(reason);
    link?.close(reason);
    return engine;
  }

  /** Fenced or demoted: this node must produce no more output. */
  private isFenced(): boolean {
    const s = this.actor?.getSnapshot();
    return !!s && (s.matches('fenced') || s.matches('demoted'));
  }

  /** Records the pair as protected at `epoch`; output waiting for it leaves on 'pairProtected'. */
  private markProtected(epoch: number): void {
    const ctx = this.ctx;
    // Nothing backs a blackhole's checkpoints: the arbiter's record must never say this pair is protected. Its
    // output is released as the checkpoints complete (that is what blackhole mode measures).
    if (ctx.blackhole) {
      ctx.events.emit('pairProtected', epoch);
      return;
    }
    ctx.arbitration.markProtected(ctx.o.nodeId, epoch).then(
      (d) => {
        if (!d || ctx.stopped || ctx.role !== 'primary' || ctx.epoch !== epoch) return;
        if (d.won) ctx.events.emit('pairProtected', epoch);
        // This node's own later epoch (it lost the secondary and won the next epoch meanwhile): nothing to record.
        else if (d.current?.holder === ctx.o.nodeId) return;
        // The record moved on without this node: someone else won a later epoch.
        else this.actor?.send({ type: 'HIGHER_EPOCH_SEEN', epoch: d.current?.epoch ?? epoch + 1 });
      },
      (e: unknown) => ctx.roleLogger().error({ err: e }, 'arbiter request failed for good: the pair is not recorded as protected'),
    );
  }

  private effects() {
    const ctx = this.ctx;
    const engine = () => this.engine;
    const begin = (c: PrimaryContext) => {
      if (c.current) engine()?.beginCheckpoint(c.current.seq, c.current.reason, c.linkIndex);
    };
    return {
      startLiveMigration: (c: PrimaryContext) => {
        begin(c);
        engine()?.startLiveMigration();
      },
      sendNewCheckpoint: (c: PrimaryContext) => {
        begin(c);
        engine()?.sendNewCheckpoint();
      },
      suspendAndSendCheckpoint: (c: PrimaryContext, dirty: readonly number[]) => {
        begin(c);
        engine()?.suspendAndSendCheckpoint(dirty);
      },
      resumeGuest: () => engine()?.resumeGuest(),
      checkpointCompleted: () => {
        const e = engine();
        void e?.completeCheckpoint().then((m) => m && ctx.checkpointCompleted(m));
      },
      protectionStarted: (c: PrimaryContext) => {
        if (ctx.blackhole) ctx.roleLogger().warn({ rounds: engine()?.precopyRounds }, 'blackhole: the first checkpoint went nowhere, as every one will: NOT protected');
        else ctx.roleLogger().info({ rounds: engine()?.precopyRounds }, 'protected: the secondary holds a complete checkpoint');
        ctx.events.emit('protected');
        this.markProtected(c.epoch);
      },
      decide: (c: PrimaryContext) => decide(ctx, 'primary', c.epoch, (e) => this.actor?.send(e)),
      continueAlone: (c: PrimaryContext) => {
        ctx.roleLogger().warn('won the epoch: serving unprotected, held output released');
        ctx.events.emit('continuing', c.epoch);
      },
      dropSecondary: (_c: PrimaryContext, error: CoordinatorError) => {
        if (!this.link && !this.engine) return;
        ctx.lastError = error;
        ctx.roleLogger().warn({ code: error.code, reason: error.message }, 'secondary lost: output held until the arbiter decides');
        const e = this.detachSecondary(error.message);
        ctx.checkpoints.rejectAll(new CoordinatorError(CoordinatorErrorCode.UNPROTECTED, `the secondary was dropped: ${error.message}`, { cause: error }));
        // Whatever the engine was doing, the guest must run again (it may be suspended mid-checkpoint).
        void (e?.abort() ?? Promise.resolve()).then(async () => {
          if (ctx.guest?.state === 'suspended' && ctx.role === 'primary' && !this.isFenced()) await ctx.resumeGuest();
        });
        ctx.events.emit('unprotected', error);
        if (error.code !== CoordinatorErrorCode.STOPPED) ctx.events.emit('deciding', error);
      },
      refuseRequest: () => {
        ctx.checkpoints.rejectAll(new CoordinatorError(CoordinatorErrorCode.UNPROTECTED, 'no synchronised secondary: nothing to checkpoint to'));
      },
      stepDown: (_c: PrimaryContext, error: CoordinatorError) => {
        ctx.lastError = error;
        ctx.roleLogger().warn({ code: error.code, reason: error.message }, 'stepping down: no longer acting as primary');
        const e = this.detachSecondary(error.message);
        ctx.checkpoints.rejectAll(error);
        void (async () => {
          await e?.abort();
          // A primary that is not the active side must produce no more output: its guest stays suspended (a
          // guest that is gone cannot be, and produces nothing either).
          if (ctx.guest?.state === 'running') {
            await ctx.suspendGuest().catch((err: unknown) => ctx.roleLogger().warn({ err }, 'the guest could not be suspended while stepping down'));
          }
          await this.server?.close();
          this.server = undefined;
        })();
        ctx.events.emit('fenced', error);
      },
    };
  }
}
