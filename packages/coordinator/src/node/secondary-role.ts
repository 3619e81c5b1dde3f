import { createActor, type Actor } from 'xstate';
import { checkPrimaryEpoch } from '../epoch.js';
import { asCoordinatorError, CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { Extension } from '../engine/extensions.js';
import { SecondaryCheckpointEngine } from '../engine/secondary-engine.js';
import { bindSecondaryEffects } from '../statechart/bind.js';
import type { SecondaryEvent } from '../statechart/secondary.js';
import { DEFAULT_HEARTBEAT, LinkErrorCode, type Hello, type PeerLink, type ReadRingStats } from '../transport/index.js';
import { childLogger } from '../observability/logger.js';
import type { NodeContext } from './context.js';
import { decide } from './decide.js';
import { Peer } from './peer.js';
import { PrimaryRole } from './primary-role.js';
import { observeTransitions, stateOf } from './transitions.js';

/**
 * The secondary role: its statechart, the replication link it dialled and the engine applying the primary's
 * checkpoints into the guest it hosts. Its promotion makes the node's PrimaryRole (`promoted` hands it over).
 */
export class SecondaryRole {
  readonly kind = 'secondary';
  private readonly ctx: NodeContext;
  private readonly promoted: (primary: PrimaryRole) => void;
  private actor: Actor<ReturnType<typeof bindSecondaryEffects>> | undefined;
  private link: PeerLink | undefined;
  /** The primary: its side links (dialled first) and replication link, lost together. */
  private peer: Peer | undefined;
  /** Bumped at every attach/drop: events of an older link are ignored. */
  private linkGeneration = 0;
  private engine: SecondaryCheckpointEngine | undefined;
  /** The link whose reads are not yet in the context's totals. */
  private readingLink: PeerLink | undefined;
  private failoverWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(ctx: NodeContext, promoted: (primary: PrimaryRole) => void) {
    this.ctx = ctx;
    this.promoted = promoted;
  }

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
  /** The live link's reads (the ended ones are in the context's totals). */
  get liveReads(): Readonly<ReadRingStats> | undefined {
    return this.readingLink?.readRingStats;
  }

  async start(): Promise<void> {
    const ctx = this.ctx;
    const o = ctx.o;
    const url = o.replication.peer;
    if (!url) throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, 'a secondary needs replication.peer (the primary URL)');
    // The side channels first (the output proxy's: the primary mirrors input from the moment this secondary's
    // first checkpoint starts), retried while the primary is not up yet; then the replication link.
    const sides: PeerLink[] = [];
    try {
      for (const side of o.sideChannels ?? []) sides.push(await this.dialUntilUp(url, { ...ctx.hello('secondary'), channel: side.channel, extensions: [...side.extensions] }));
    } catch (e) {
      for (const l of sides) l.close('the primary could not be joined');
      throw e;
    }
    if (ctx.stopped) {
      for (const l of sides) l.close('node stopped');
      throw new CoordinatorError(CoordinatorErrorCode.STOPPED, 'the node stopped while joining the primary');
    }
    const actor = createActor(bindSecondaryEffects(this.effects()), {
      input: { nodeId: o.nodeId, mode: o.mode, epoch: ctx.epoch, timings: ctx.checkpoint },
    });
    observeTransitions(actor, 'secondary', () => ctx.epoch, (t) => ctx.reportTransition(t));
    this.actor = actor;
    actor.start();
    let link: PeerLink;
    try {
      link = await ctx.network.connect({
        url,
        security: o.security,
        heartbeat: o.heartbeat ?? DEFAULT_HEARTBEAT,
        hello: ctx.hello('secondary'),
        timeoutMs: o.connectTimeoutMs,
        maxPayload: o.replication.maxFrameBytes,
        // The replication stream is read into reused memory (ReadRing): a 50,000-page checkpoint no longer
        // allocates 200 MB of read buffers for the collector (docs/performance.md, tenth round).
        reuseReadMemory: true,
        logger: childLogger(ctx.baseLog, { component: 'transport' }),
      });
      const peer = link.peerHello;
      if (peer.role !== 'primary' || peer.mode !== o.mode) {
        link.close('not a primary of this mode');
        throw new CoordinatorError(CoordinatorErrorCode.PEER_REFUSED, `the peer is a ${peer.mode} ${peer.role}, expected a ${o.mode} primary`);
      }
      checkPrimaryEpoch(peer.epoch, ctx.epoch);
    } catch (e) {
      const error = asCoordinatorError(e, CoordinatorErrorCode.PEER_REFUSED, `could not join the primary at ${url}`);
      if (typeof (e as { close?: unknown })?.close === 'function') (e as PeerLink).close();
      for (const l of sides) l.close(error.message);
      actor.send({ type: 'PRIMARY_LOST', error });
      throw error;
    }
    const primary = new Peer(link.peerHello.nodeId);
    this.peer = primary;
    primary.onLost((reason, error) => ctx.events.emit('peerLost', reason, error?.code ?? 'dropped'));
    for (const l of sides) {
      primary.add(l);
      o.onSideLink?.(l);
    }
    primary.add(link);
    this.attachPrimary(link, primary);
  }

  /**
   * Dials the primary. A primary that is not up yet (refused, timed out) is tried again every second for up to
   * startRetryMs, so hosts may start in any order; an authentication failure or a refusal is not retried.
   */
  private async dialUntilUp(url: string, hello: Hello): Promise<PeerLink> {
    const ctx = this.ctx;
    const o = ctx.o;
    const deadline = Date.now() + (o.startRetryMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      try {
        return await ctx.network.connect({
          url,
          security: o.security,
          heartbeat: o.heartbeat ?? DEFAULT_HEARTBEAT,
          hello,
          maxPayload: o.replication.maxFrameBytes,
          timeoutMs: o.connectTimeoutMs,
          logger: childLogger(ctx.baseLog, { component: 'transport', channel: hello.channel }),
        });
      } catch (e) {
        const code = (e as { code?: string }).code;
        const retryable = code === LinkErrorCode.SOCKET_ERROR || code === LinkErrorCode.CONNECT_TIMEOUT || code === LinkErrorCode.CLOSED;
        if (!retryable || ctx.stopped || Date.now() > deadline) throw e;
        if (attempt === 1 || attempt % 10 === 0) ctx.log.warn({ err: e, peer: url, attempt }, 'primary not reachable yet: retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async stop(): Promise<void> {
    if (this.actor?.getSnapshot().status === 'active') this.actor.send({ type: 'STOP' });
    this.actor?.stop();
    this.link?.close('node stopped');
    this.link = undefined;
    this.peer?.drop('node stopped');
    await this.engine?.idle();
  }

  /** Operator failover: promote now (rejects with COLO_NOT_SYNCHRONISED without a complete checkpoint). */
  failover(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.failoverWaiter = { resolve, reject };
      this.actor?.send({ type: 'FAILOVER' });
    });
  }

  /** The primary is lost for a reason found outside its links: they close (failover rules apply). */
  dropPrimary(reason: string): void {
    if (this.link) this.peer?.drop(reason);
  }

  private attachPrimary(link: PeerLink, primary: Peer): void {
    const ctx = this.ctx;
    const o = ctx.o;
    const actor = this.actor!;
    const generation = ++this.linkGeneration;
    const current = () => generation === this.linkGeneration;
    this.link = link;
    ctx.epoch = Math.max(ctx.epoch, link.peerHello.epoch);
    const emit = (e: SecondaryEvent) => {
      if (current()) actor.send(e);
    };
    const engine = new SecondaryCheckpointEngine({
      mode: o.mode,
      extensions: link.extensions,
      send: (b) => link.send(b),
      hostGuest: (identity) => {
        if (!o.hostGuest) throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, 'a secondary needs options.hostGuest');
        const d = o.hostGuest(identity);
        ctx.guest = d;
        // Pages are written only into a guest that is not running.
        if (d.state === 'running') void ctx.suspendGuest();
        return d;
      },
      emit,
      onCheckpointApplied: (index, d, timing) => {
        ctx.checkpoints.applied(index, Date.now(), timing);
        ctx.events.emit('applied', index, d, timing);
      },
      guestHooks: ctx.guestHooks,
      maxRecordLength: o.maxRecordLength,
      stallTimeoutMs: ctx.checkpoint.stallTimeoutMs,
      logger: childLogger(ctx.baseLog, { component: 'engine' }),
    });
    this.engine = engine;
    link.onData(
      (bytes) => {
        if (!current()) return;
        ctx.streamBytesReceived += bytes.length;
        engine.receive(bytes);
      },
      // The engine copies what it keeps once a record is whole: the link may hand it reused memory.
      { retainedBytes: () => engine.retainedBytes },
    );
    if (this.readingLink) this.endLinkReads(this.readingLink);
    this.readingLink = link;
    link.onClose(() => this.endLinkReads(link));
    // Any link of the primary ending (or a drop) loses it.
    primary.onLost((reason, error) => emit({ type: 'PRIMARY_LOST', error: asCoordinatorError(error ?? reason, CoordinatorErrorCode.PEER_LOST, 'the primary was lost') }));
    ctx.roleLogger().info({ primary: link.peerHello.nodeId, remote: link.remoteAddress, extensions: link.extensions }, 'joined the primary');
    actor.send({ type: 'CONNECTED', peer: `${link.peerHello.nodeId}@${link.remoteAddress}`, epoch: link.peerHello.epoch, ack: link.extensions.includes(Extension.CHECKPOINT_ACK) });
  }

  /** A replication link's reads join the totals once (at its end, or when a newer link replaces it). */
  private endLinkReads(link: PeerLink): void {
    if (this.readingLink !== link) return;
    const r = link.readRingStats;
    const t = this.ctx.endedLinkReads;
    if (r) {
      t.ringReads += r.ringReads;
      t.fallbackReads += r.fallbackReads;
      t.copiedReads += r.copiedReads;
    }
    this.readingLink = undefined;
  }

  private effects() {
    const ctx = this.ctx;
    const engine = () => this.engine;
    const closeLink = (reason: string) => {
      this.linkGeneration++;
      const l = this.link;
      this.link = undefined;
      // The peer first: its loss carries this reason (the links' closes would only say they were closed).
      this.peer?.drop(reason);
      l?.close(reason);
    };
    return {
      suspendAndReportDirty: () => engine()?.suspendAndReportDirty(),
      applyCheckpoint: () => engine()?.applyCheckpoint(),
      readyAndResume: () => engine()?.readyAndResume(),
      acknowledge: (c: { applied: number }) => engine()?.acknowledge(c.applied),
      discardCheckpoint: () => engine()?.discard(),
      abandonPrimary: (_c: unknown, error: CoordinatorError) => {
        ctx.lastError = error;
        // Expected in a failover: the cause by its code, no stack trace.
        ctx.roleLogger().warn({ code: error.code, reason: error.message }, 'primary lost: asking the arbiter before taking over');
        closeLink(error.message);
        ctx.events.emit('deciding', error);
      },
      decide: (c: { epoch: number }) => decide(ctx, 'secondary', c.epoch, (e) => this.actor?.send(e)),
      promote: (c: { epoch: number }) => {
        const e = engine();
        void (async () => {
          await e?.idle();
          if (ctx.stopped) return;
          try {
            // The guest resumes on its last complete checkpoint (anything half-received was discarded), still as
            // a secondary's guest (its proxy sees the resume). A guest that cannot (a QEMU that does not start)
            // fails the promotion like anything below.
            if (ctx.guest?.state === 'suspended') await ctx.resumeGuest();
            ctx.epoch = c.epoch;
            ctx.role = 'primary';
            this.engine = undefined;
            ctx.roleLogger().warn('promoted: acting as primary, unprotected'); // the role logger binds the new epoch
            const primary = new PrimaryRole(ctx);
            this.promoted(primary);
            await primary.start(ctx.checkpoints.seq, true);
            ctx.events.emit('promoted', c.epoch);
          } catch (err) {
            const ce = asCoordinatorError(err, CoordinatorErrorCode.PEER_LOST, 'promotion failed');
            ctx.lastError = ce;
            ctx.roleLogger().error({ err: ce }, 'promotion failed: not acting as primary');
            if (ctx.guest?.state === 'running') await ctx.suspendGuest();
            ctx.events.emit('fenced', ce);
          }
          this.failoverWaiter?.resolve();
          this.failoverWaiter = undefined;
        })();
      },
      standDown: (_c: unknown, error: CoordinatorError) => {
        ctx.lastError = error;
        ctx.roleLogger().error({ err: error }, 'the primary kept the epoch: discarding this replica');
        if (ctx.guest?.state === 'running') void ctx.suspendGuest();
        this.failoverWaiter?.reject(error);
        this.failoverWaiter = undefined;
        ctx.events.emit('fenced', error);
      },
      halt: (_c: unknown, error: CoordinatorError) => {
        ctx.lastError = error;
        closeLink(error.message);
        if (error.code !== CoordinatorErrorCode.STOPPED) ctx.roleLogger().error({ err: error }, 'secondary halted without taking over');
        ctx.events.emit('halted', error);
      },
      refuseFailover: (_c: unknown, error: CoordinatorError) => {
        this.failoverWaiter?.reject(error);
        this.failoverWaiter = undefined;
      },
    };
  }
}
