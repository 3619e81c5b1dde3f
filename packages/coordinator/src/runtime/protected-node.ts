import { PerformanceObserver } from 'node:perf_hooks';
import type { Domain } from '@colo/domain';
import type { Logger } from 'pino';
import { startAdminServer, type AdminServer } from '../admin/server.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import { Extension, type GuestIdentity } from '../engine/extensions.js';
import { NODE_DEFAULTS } from '../defaults.js';
import type { AppliedCheckpointTiming } from '../engine/secondary-engine.js';
import type { ArbitrationStatus } from '../node/arbitration.js';
import { ColoNode } from '../node/colo-node.js';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import type { ColoNodeOptions } from '../node/options.js';
import type { Transition } from '../node/transitions.js';
import { collectProcessMetrics, createNodeMetrics, LINK_READ_PLACES, NODE_ROLES, setOneHot, type NodeMetrics } from '../observability/metrics.js';
import { SlowCheckpointWatch, type CheckpointTiming, type SlowCheckpoint } from '../observability/slow-checkpoints.js';
import { PrimaryProxy, type PrimaryProxyOptions } from '../proxy/primary-proxy.js';
import { SecondaryProxy } from '../proxy/secondary-proxy.js';
import type { ProxyMetrics } from '../proxy/metrics.js';
import type { NodeRole, ReplicationMode } from '../statechart/types.js';
import { PROTOCOL_VERSION, wsNetwork, type PeerLink, type PeerNetwork, type ReadRingStats } from '../transport/index.js';
import { runPromoteHook } from './promote-hook.js';
import { BlackholeLink } from '../node/blackhole-link.js';

/**
 * A protected node's options: the replication node's (ColoNodeOptions, the same names and meanings: nothing is
 * reshaped between the two layers) plus what the client path, the admin API and the metrics need. The proxy link
 * to the peer takes the replication link's network, security, heartbeat and largest frame.
 */
export interface ProtectedNodeOptions extends Omit<ColoNodeOptions, 'onSideLink'> {
  version: string;
  /** The output rule's bounds (default NODE_DEFAULTS.output). */
  output?: Partial<OutputOptions>;
  /**
   * Where clients reach the guest while this node is the primary. Without `listen` there is no TCP service: a
   * driver with its own client path (a simulation, another hypervisor's) gets each primary proxy from onServing.
   */
  service: { listen?: { host: string; port: number }; promoteHook?: string };
  admin?: { listen: { host: string; port: number }; token?: string };
  /** Secondary: how long to keep retrying a primary that is not reachable yet at start. Default 60 s. */
  startRetryMs?: number;
  /**
   * Also export the process's own metrics (prom-client's defaults: garbage-collection pauses by kind, event-loop
   * lag, CPU, heap, file descriptors). For a node that owns its process (`colo node`): they describe the process,
   * not the node, so a test or bench running several nodes in one process leaves them off.
   */
  processMetrics?: boolean;
  /**
   * Attribute the collector's pauses to checkpoints (the 'gc' performance entries). Default true. Off where the
   * node's clock is not the process's (a simulation: its checkpoints happen in simulated time).
   */
  watchCollector?: boolean;
  logger: Logger;
}

interface OutputOptions {
  compareTimeoutMs: number;
  maxHeldPerConnection: number;
  maxHeldTotal: number;
}

/** GET /status: the node's statechart status plus what the client path and operators need. */
export interface ProtectedNodeStatus {
  nodeId: string;
  role: NodeRole | 'fenced' | 'halted';
  state: string;
  mode: ReplicationMode;
  epoch: number;
  protected: boolean;
  /** Checkpointing into nothing (blackhole mode): never protected. */
  blackhole: boolean;
  peer: string | null;
  listening: string | null;
  /** Where clients reach the protected service, while this node serves it. */
  service: { host: string; port: number } | null;
  lastCheckpoint: { seq: number; reason: string; at: string; durationSeconds: number; pauseSeconds: number; pages: number; bytes: number } | null;
  checkpoints: Record<string, number>;
  output: ProxyMetrics | null;
  failovers: number;
  lastError: { code: string; message: string } | null;
  /** Primary, during a secondary's initial synchronisation: the pre-copy round and its pages sent so far. */
  sync: { round: number; pagesSent: number; totalPages: number } | null;
  /** The arbiter: kind, where, reachable, a request waiting, the last decision. */
  arbiter: ArbitrationStatus;
  version: string;
}

/**
 * One node of a protected pair, complete: the replication node (statechart, engine, link), the output proxy
 * (client service, input mirroring, compare/hold, barriers), metrics, logs and the admin API. It owns the
 * hook points between them:
 * - every guest suspend/resume the node reports (its suspending/resumed events) reaches the proxy first (input
 *   gate, barrier with the exact input seq);
 * - checkpoint k (k = 1 for the initial synchronisation of each secondary) is the same number on both sides;
 * - the proxy link is a second authenticated link (channel 'proxy') to the same listener, dialled by the
 *   secondary before its replication link, so input is mirrored from the first checkpoint on;
 * - losing either link loses the secondary (or the primary): the two are one peer.
 */
export class ProtectedNode {
  readonly metrics: NodeMetrics;
  private readonly o: ProtectedNodeOptions;
  private readonly log: Logger;
  /** The replication node this one is built on (statechart, engine, replication link): for observers. */
  readonly replication: ColoNode;
  private readonly network: PeerNetwork;
  private primaryProxy: PrimaryProxy | undefined;
  private secondaryProxy: SecondaryProxy | undefined;
  private proxyLink: PeerLink | undefined;
  private admin: AdminServer | undefined;
  private terminal: 'fenced' | 'halted' | undefined;
  private failoverCount = 0;
  private lastProxyMetrics: ProxyMetrics | undefined;
  private lastStreamBytesReceived = 0;
  private lastLinkReads: Readonly<ReadRingStats> = { ringReads: 0, fallbackReads: 0, copiedReads: 0 };
  /** Proxy-link bytes received and not yet added to colo_replication_bytes_total. */
  private proxyBytesReceived = 0;
  private metricsTimer: ReturnType<typeof setInterval> | undefined;
  /**
   * This node's part of each checkpoint (primary: the pause; secondary: first record to applied), the slow ones,
   * and the collector's time inside each (fed by the 'gc' observer). A new one at promotion: a secondary's
   * durations are no median for a primary's pauses.
   */
  private slowCheckpoints = new SlowCheckpointWatch();
  private gcObserver: PerformanceObserver | undefined;
  private stopped = false;
  private readonly exitListeners = new Set<(reason: 'halted' | 'fenced', error: Error) => void>();

  constructor(options: ProtectedNodeOptions) {
    this.o = options;
    this.log = options.logger.child({ component: 'runtime' });
    this.network = options.network ?? wsNetwork;
    this.metrics = createNodeMetrics({ nodeId: options.nodeId, mode: options.mode, version: options.version });
    if (options.processMetrics) collectProcessMetrics(this.metrics.registry);
    const { version: _v, output: _o, service: _s, admin: _a, startRetryMs: _r, processMetrics: _p, watchCollector: _w, ...replication } = options;
    this.replication = new ColoNode({
      ...replication,
      hostGuest: (identity) => this.hostGuest(identity),
      onSideLink: (link) => this.attachProxyLink(link),
    });
    const hooks = this.suspendHooks();
    this.replication.on('suspending', hooks.beforeSuspend);
    this.replication.on('resumed', hooks.afterResume);
    this.replication.onTransition((t) => this.onTransition(t));
    this.replication.on('checkpoint', (m) => this.onCheckpoint(m));
    this.replication.on('applied', (index, _d, timing) => this.onApplied(index, timing));
    this.replication.on('unprotected', () => this.detachProxy('the replication link to the secondary ended'));
    // The arbiter's word on output (docs/output-rules.md): held from losing the peer until this node wins the
    // next epoch; held after a secondary attaches until the arbiter records the pair as protected.
    this.replication.on('deciding', () => {
      if (this.replication.role === 'primary') this.primaryProxy?.holdForDecision();
    });
    this.replication.on('continuing', () => this.primaryProxy?.continueAlone());
    this.watchArbiter();
    this.replication.on('pairProtected', () => this.primaryProxy?.recorded());
    this.replication.on('promoted', (epoch) => void this.onPromoted(epoch));
    this.replication.on('halted', (e) => {
      if (e.code !== CoordinatorErrorCode.STOPPED) this.exit('halted', e);
    });
    this.replication.on('fenced', (e) => {
      void this.primaryProxy?.close();
      this.primaryProxy = undefined;
      this.exit('fenced', e);
    });
  }

  get role(): NodeRole {
    return this.replication.role;
  }
  get epoch(): number {
    return this.replication.epoch;
  }
  get domain(): Domain | undefined {
    return this.replication.domain;
  }
  get serviceAddress(): { host: string; port: number } | null {
    return this.primaryProxy?.service?.address ?? null;
  }
  get adminUrl(): string | undefined {
    return this.admin?.url;
  }

  /** Called once if the node stops acting for good (a secondary that cannot take over, a fenced primary). */
  onExit(cb: (reason: 'halted' | 'fenced', error: Error) => void): void {
    this.exitListeners.add(cb);
  }

  /**
   * Every primary proxy this node serves clients through, as it starts (at start, at a promotion): the client
   * path of a driver without a TCP service (service.listen unset). Returns an unsubscribe function.
   */
  onServing(cb: (proxy: PrimaryProxy) => void): () => void {
    this.servingListeners.add(cb);
    return () => this.servingListeners.delete(cb);
  }
  private readonly servingListeners = new Set<(proxy: PrimaryProxy) => void>();

  async start(): Promise<void> {
    const o = this.o;
    if (o.watchCollector !== false) {
      // Collections, on the same clock as the pause windows (entries start relative to performance.timeOrigin).
      this.gcObserver = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) this.slowCheckpoints.collected({ start: e.startTime, duration: e.duration });
      });
      this.gcObserver.observe({ entryTypes: ['gc'] });
    }
    if (o.admin) {
      this.admin = await startAdminServer({
        host: o.admin.listen.host,
        port: o.admin.listen.port,
        token: o.admin.token,
        logger: o.logger,
        target: {
          status: () => this.status(),
          ready: () => this.ready(),
          metrics: async () => {
            this.refreshProxyMetrics();
            return { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
          },
          checkpoint: async () => this.replication.requestCheckpoint('manual'),
          failover: async () => {
            this.manualFailover = true;
            // A planned takeover fences the old primary first, so there is never a moment with two primaries
            // (an unprotected old primary would acknowledge writes the new one never sees).
            if (this.replication.role === 'secondary' && this.replication.status().protected) {
              // A fenced primary ends its links, and losing the primary promotes this node by itself: wait for
              // that rather than racing it (a failover() on a node just promoted would step it down again).
              await this.fenceOldPrimary();
              await this.promotedWithin(3000);
            }
            if (this.replication.role === 'secondary') await this.replication.failover();
            return this.status();
          },
          crash: () => {
            this.log.warn('crash requested through the admin API (drill): dying now');
            process.kill(process.pid, 'SIGKILL');
          },
        },
      });
      this.log.info({ url: this.admin.url }, 'admin API listening');
    }
    this.metricsTimer = setInterval(() => this.refreshProxyMetrics(), 1000);
    this.metricsTimer.unref();

    if (o.role === 'primary') {
      await this.startPrimaryProxy(o.domain!, 1);
      // Blackhole: the proxy's peer is nobody too; the checkpoints' completion releases output as a real
      // secondary's acknowledgements would.
      if (o.blackhole) {
        this.attachProxyLink(new BlackholeLink({ protocol: PROTOCOL_VERSION, channel: 'proxy', nodeId: o.nodeId, role: 'primary', mode: o.mode, epoch: this.replication.epoch, extensions: [] }));
      }
      await this.replication.start();
    } else {
      // The proxy link first: the primary mirrors input from the moment this secondary's first checkpoint starts.
      this.proxyLink = await this.dialPrimary();
      this.watchProxyLink(this.proxyLink);
      await this.replication.start();
    }
  }

  /**
   * Dials the primary's proxy channel. A primary that is not up yet (refused, timed out) is retried every
   * second for up to startRetryMs, so hosts may start in any order; an authentication failure is not retried.
   */
  private async dialPrimary(): Promise<PeerLink> {
    const o = this.o;
    const deadline = Date.now() + (o.startRetryMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.network.connect({
          url: o.replication.peer!,
          security: o.security,
          heartbeat: o.heartbeat ?? NODE_DEFAULTS.heartbeat,
          hello: { protocol: PROTOCOL_VERSION, channel: 'proxy', nodeId: o.nodeId, role: 'secondary', mode: o.mode, epoch: this.replication.epoch, extensions: [Extension.INPUT_WATERMARK] },
          maxPayload: o.replication.maxFrameBytes,
          timeoutMs: o.connectTimeoutMs,
          logger: o.logger.child({ channel: 'proxy' }),
        });
      } catch (e) {
        const code = (e as { code?: string }).code;
        const retryable = code === 'LINK_SOCKET_ERROR' || code === 'LINK_CONNECT_TIMEOUT' || code === 'LINK_CLOSED';
        if (!retryable || this.stopped || Date.now() > deadline) throw e;
        if (attempt === 1 || attempt % 10 === 0) this.log.warn({ err: e, peer: o.replication.peer, attempt }, 'primary not reachable yet: retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /**
   * Planned failover: tells the primary that a node of a higher epoch exists (a hello at epoch + 1 on its
   * replication listener), which makes it step down (stop serving, suspend its guest) and end its links; the
   * caller then promotes this node. If the primary cannot be reached it is already gone: nothing to fence.
   */
  private async fenceOldPrimary(): Promise<void> {
    const o = this.o;
    try {
      const probe = await this.network.connect({
        url: o.replication.peer!,
        security: o.security,
        heartbeat: o.heartbeat ?? NODE_DEFAULTS.heartbeat,
        hello: { protocol: PROTOCOL_VERSION, channel: 'replication', nodeId: o.nodeId, role: 'secondary', mode: o.mode, epoch: this.replication.epoch + 1, extensions: [] },
        timeoutMs: 3000,
        logger: o.logger.child({ channel: 'fence' }),
      });
      probe.close('fencing probe');
      this.log.warn('the old primary accepted the fencing probe instead of stepping down');
    } catch (e) {
      this.log.info({ code: (e as { code?: string }).code }, 'old primary fenced (or unreachable) before the takeover');
    }
  }

  /** Resolves once this node acts as primary, or after timeoutMs. */
  private promotedWithin(timeoutMs: number): Promise<void> {
    if (this.replication.role === 'primary') return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const off = this.replication.on('promoted', done);
      function done() {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.metricsTimer);
    this.gcObserver?.disconnect();
    this.proxyLink?.close('node stopping');
    await this.replication?.stop();
    await this.primaryProxy?.close();
    this.secondaryProxy?.close();
    await this.admin?.close();
    this.domain?.destroy();
  }

  status(): ProtectedNodeStatus {
    const s = this.replication.status();
    const lc = s.lastCheckpoint;
    return {
      nodeId: s.nodeId,
      role: this.terminal ?? s.role,
      state: s.state,
      mode: s.mode,
      epoch: s.epoch,
      protected: s.protected && !this.terminal,
      blackhole: s.blackhole,
      peer: s.peer,
      listening: s.listening,
      service: this.terminal ? null : this.serviceAddress,
      lastCheckpoint: lc ? { ...lc, at: new Date(lc.at).toISOString() } : null,
      checkpoints: s.checkpoints,
      output: this.primaryProxy?.metrics() ?? this.secondaryProxy?.metrics() ?? null,
      failovers: this.failoverCount,
      lastError: s.lastError,
      sync: s.sync,
      arbiter: s.arbiter,
      version: this.o.version,
    };
  }

  /** Ready: a primary serving clients, or a secondary holding a complete checkpoint. */
  private ready(): boolean {
    if (this.terminal) return false;
    const s = this.replication.status();
    return s.role === 'primary' ? this.serviceAddress !== null : s.protected;
  }

  // ------------------------------------------------------------------------------------------ hook points

  /**
   * The proxies number a link's checkpoints from 1 (their barriers and generations; 0: none yet): checkpoint
   * `linkIndex` of the replication link (the engines' and the primary machine's count, 0 = the initial
   * synchronisation) is the proxies' `linkIndex + 1`. A suspension that takes no checkpoint gives undefined.
   */
  private suspendHooks() {
    return {
      beforeSuspend: (linkIndex: number | undefined) => {
        if (this.replication?.role === 'secondary') {
          if (linkIndex !== undefined) this.secondaryProxy?.checkpointStarted(linkIndex + 1);
        } else if (this.proxyAttached && linkIndex !== undefined) {
          this.primaryProxy?.beforeSuspend(linkIndex + 1);
        } else {
          this.primaryProxy?.beforeSuspend(0);
        }
      },
      afterResume: () => {
        if (this.replication?.role === 'secondary') this.secondaryProxy?.resumed();
        else this.primaryProxy?.afterResume();
      },
    };
  }

  private proxyAttached = false;
  private manualFailover = false;

  private hostGuest(identity: GuestIdentity | undefined): Domain {
    if (!this.o.hostGuest) throw new CoordinatorError(CoordinatorErrorCode.BAD_OPTIONS, 'a secondary needs options.hostGuest');
    const link = this.proxyLink;
    // The two links are one peer: without the proxy link there is nothing to synchronise with.
    if (!link) throw new CoordinatorError(CoordinatorErrorCode.PEER_LOST, 'the proxy link to the primary ended before the synchronisation began');
    const guest = this.o.hostGuest(identity);
    this.secondaryProxy?.close();
    this.secondaryProxy = new SecondaryProxy({
      domain: guest,
      link,
      mode: this.o.mode,
      barrierTimeoutMs: this.o.timings?.phaseTimeoutMs ?? NODE_DEFAULTS.timings.phaseTimeoutMs,
    });
    this.countProxyBytes(link);
    this.secondaryProxy.onLinkError((e) => {
      this.log.error({ err: e }, 'the primary sent invalid proxy traffic: dropping the link');
      this.proxyLink?.close(e.message);
    });
    return guest;
  }

  /** A primary proxy's service (none without service.listen) and output bounds. */
  private servingOptions(): Omit<PrimaryProxyOptions, 'domain' | 'firstConnectionId'> {
    const listen = this.o.service.listen;
    return {
      ...(listen ? { service: { host: listen.host, port: listen.port } } : {}),
      compareTimeoutMs: this.o.output?.compareTimeoutMs ?? NODE_DEFAULTS.output.compareTimeoutMs,
      maxHeldPerConnection: this.o.output?.maxHeldPerConnection ?? NODE_DEFAULTS.output.maxHeldPerConnection,
      maxHeldTotal: this.o.output?.maxHeldTotal ?? NODE_DEFAULTS.output.maxHeldTotal,
    };
  }

  private async startPrimaryProxy(guest: Domain, firstConnectionId: number): Promise<void> {
    this.primaryProxy = new PrimaryProxy({
      domain: guest,
      firstConnectionId,
      ...this.servingOptions(),
    });
    this.wirePrimaryProxy(this.primaryProxy);
    const address = await this.primaryProxy.start();
    this.log.info({ service: address }, 'serving clients');
  }

  private wirePrimaryProxy(proxy: PrimaryProxy): void {
    for (const cb of this.servingListeners) cb(proxy);
    proxy.onCheckpointNeeded((reason) => {
      this.replication.requestCheckpoint(reason).catch((e: Error) => this.log.debug({ err: e, reason }, 'checkpoint request not taken'));
    });
    proxy.onLinkError((e) => {
      this.log.error({ err: e }, 'the secondary sent invalid proxy traffic: dropping it');
      this.replication.dropSecondary(e.message);
    });
  }

  /** Primary: a secondary's proxy link arrived (before its replication link). */
  private attachProxyLink(link: PeerLink): void {
    if (!this.primaryProxy || this.proxyAttached || this.replication.role !== 'primary') {
      link.close('this primary is not accepting a proxy link now');
      return;
    }
    this.proxyLink = link;
    this.proxyAttached = true;
    this.primaryProxy.holdUntilRecorded();
    this.primaryProxy.attachSecondary(link, this.o.mode, { inputWatermark: link.extensions.includes(Extension.INPUT_WATERMARK) });
    this.countProxyBytes(link);
    this.watchProxyLink(link);
    // A secondary that opens a proxy link but never completes its replication link must not hold output forever.
    const timer = setTimeout(() => {
      if (this.proxyLink === link && !this.replication.status().protected && !this.o.blackhole) {
        this.log.warn({ peer: link.peerHello.nodeId }, 'the secondary did not synchronise in time: dropping it');
        link.close('no synchronisation');
        this.replication.dropSecondary('the secondary did not synchronise in time');
      }
    }, 120_000);
    timer.unref();
    link.onClose(() => clearTimeout(timer));
    this.log.info({ peer: link.peerHello.nodeId, remote: link.remoteAddress }, 'proxy link attached');
  }

  private watchProxyLink(link: PeerLink): void {
    link.onRtt((s) => this.metrics.heartbeatRtt.observe(s));
    link.onClose((error) => {
      if (this.proxyLink !== link) return;
      this.proxyLink = undefined;
      if (this.stopped) return;
      this.log.warn({ err: error }, 'proxy link ended: the peer is lost');
      // The two links are one peer: losing either loses it.
      if (this.replication.role === 'primary') {
        this.detachProxy('proxy link ended');
        this.replication.dropSecondary('the proxy link to the secondary ended');
      } else {
        this.replication.dropPrimary('the proxy link to the primary ended');
      }
    });
  }

  /**
   * Counts the proxy link's bytes, from when its proxy reads it: a link holds what arrives until it has a reader,
   * and a counter subscribed earlier would take the secondary's first barrier (sent before the synchronisation
   * described the guest the secondary proxy is made for) to nobody. Counted here, published with the other proxy
   * metrics (every second and at each scrape): a labelled prom-client inc() per message showed in CPU profiles.
   */
  private countProxyBytes(link: PeerLink): void {
    if (this.countedProxyLinks.has(link)) return;
    this.countedProxyLinks.add(link);
    link.onData((b) => {
      this.proxyBytesReceived += b.byteLength;
    });
  }

  private readonly countedProxyLinks = new WeakSet<PeerLink>();

  private detachProxy(reason: string): void {
    if (!this.proxyAttached) return;
    this.proxyAttached = false;
    const link = this.proxyLink;
    this.proxyLink = undefined;
    link?.close(reason);
    this.primaryProxy?.secondaryLost();
    this.log.info({ reason }, 'output passes straight through (unprotected)');
  }

  private onCheckpoint(m: CheckpointMeasurement): void {
    const k = m.linkIndex + 1;
    if (this.replication.role === 'primary' && this.proxyAttached) {
      if (this.o.mode === 'remus') this.primaryProxy?.ack(k);
      this.primaryProxy?.checkpointComplete(k);
    }
    const mx = this.metrics;
    mx.checkpointDuration.observe({ reason: m.reason }, m.pauseSeconds);
    mx.checkpoints.inc({ reason: m.reason });
    mx.checkpointPages.observe(m.pages);
    if (m.deltaPages > 0) mx.checkpointDeltaPages.inc(m.deltaPages);
    if (m.resentPages > 0) mx.checkpointResentPages.inc(m.resentPages);
    mx.checkpointBytes.observe(m.bytes);
    mx.replicationBytes.inc({ direction: 'sent', channel: 'replication' }, m.bytes);
    mx.lastCheckpointTime.set(m.at / 1000);
    for (const [phase, seconds] of Object.entries(m.phases)) if (typeof seconds === 'number') mx.checkpointPhaseDuration.observe({ phase }, seconds);
    if (m.reason === 'initial') mx.initialSyncDuration.set(m.durationSeconds);
    this.watchCheckpoint({ seq: m.seq, reason: m.reason, seconds: m.pauseSeconds, window: m.pauseWindow, phases: m.phases, pages: m.pages });
  }

  /** Both roles: a checkpoint's collector time and, when it stands out, a counted and (rate-limited) logged report. */
  private watchCheckpoint(t: CheckpointTiming): void {
    const verdict = this.slowCheckpoints.checkpoint(t);
    if (verdict.collectorSeconds > 0) this.metrics.checkpointCollectorSeconds.inc(verdict.collectorSeconds);
    if (verdict.slow) this.metrics.slowCheckpoints.inc();
    if (verdict.report) this.reportSlowCheckpoint(verdict.report);
  }

  /** One warn line per slow checkpoint (rate-limited), with what it was made of and the likely cause. */
  private reportSlowCheckpoint(r: SlowCheckpoint): void {
    const ms = (s: number) => Math.round(s * 1e5) / 100;
    const primary = this.replication.role === 'primary';
    const collector = r.collectorSeconds >= (r.seconds - r.medianSeconds) / 2;
    const cause = collector
      ? `this node's collector ran ${ms(r.collectorSeconds)} ms of it`
      : primary
        ? `not this node's collector (${ms(r.collectorSeconds)} ms): with a long secondary_apply, the secondary's log tells whether its ` +
          'part (first record to applied) was slow; if it says nothing, the time went to threads waiting for a CPU on either host'
        : `not this node's collector (${ms(r.collectorSeconds)} ms): the primary's bytes came slowly (its log, the link) ` +
          'or the host did not run this node (CPU contention)';
    const what = primary ? 'pause' : 'first record to applied';
    this.log.warn(
      {
        seq: r.seq,
        reason: r.reason,
        ms: ms(r.seconds),
        medianMs: ms(r.medianSeconds),
        collectorMs: ms(r.collectorSeconds),
        ...(primary ? { phasesMs: Object.fromEntries(Object.entries(r.phases).map(([k, v]) => [k, ms(v ?? 0)])) } : {}),
        pages: r.pages,
        unreported: r.unreported,
      },
      `slow checkpoint: ${what} ${ms(r.seconds)} ms against a median of ${ms(r.medianSeconds)} ms; ${cause}` +
        (r.unreported > 0 ? ` (${r.unreported} more since the last report)` : ''),
    );
  }

  /** Secondary: checkpoint `index` (0 = initial) applied; the guest is still suspended. */
  private onApplied(index: number, timing: AppliedCheckpointTiming): void {
    this.watchCheckpoint({
      seq: index,
      reason: index === 0 ? 'initial' : 'checkpoint',
      seconds: (timing.end - timing.start) / 1000,
      window: timing,
      pages: timing.pages,
    });
    this.secondaryProxy?.checkpointApplied(index + 1).catch((e: Error) => {
      if (this.stopped || this.replication.role !== 'secondary') return;
      this.log.error({ err: e }, 'no barrier for an applied checkpoint: dropping the primary');
      this.proxyLink?.close(e.message);
    });
    this.metrics.lastCheckpointTime.set(Date.now() / 1000);
  }

  private async onPromoted(epoch: number): Promise<void> {
    this.failoverCount++;
    this.slowCheckpoints = new SlowCheckpointWatch();
    this.metrics.failovers.inc({ reason: this.manualFailover ? 'manual' : 'primary_lost' });
    this.manualFailover = false;
    this.proxyAttached = false;
    const secondary = this.secondaryProxy;
    this.secondaryProxy = undefined;
    this.proxyLink?.close('promoted');
    this.proxyLink = undefined;
    try {
      this.primaryProxy = secondary
        ? await secondary.promote(this.servingOptions())
        : undefined;
      if (this.primaryProxy) this.wirePrimaryProxy(this.primaryProxy);
      else await this.startPrimaryProxy(this.replication.domain!, 1);
      this.log.warn({ epoch, service: this.serviceAddress }, 'took over: serving clients as primary');
    } catch (e) {
      this.log.error({ err: e }, 'could not open the client service after promotion');
      return;
    }
    if (this.o.service.promoteHook) {
      const address = this.serviceAddress;
      void runPromoteHook(
        this.o.service.promoteHook,
        { COLO_NODE_ID: this.o.nodeId, COLO_EPOCH: String(epoch), COLO_SERVICE_ADDRESS: address ? `${address.host}:${address.port}` : '' },
        this.log,
      );
    }
  }

  /** The arbiter's metrics: which one, reachable, a request waiting, answers and their time, unanswered requests. */
  private watchArbiter(): void {
    const mx = this.metrics;
    mx.arbiterInfo.set({ kind: this.replication.arbiterKind }, 1);
    this.replication.onArbiter({
      decided: (d) => {
        mx.arbiterDecisions.inc({ purpose: d.purpose, outcome: d.won ? 'won' : 'lost' });
        mx.arbiterDecisionDuration.observe({ purpose: d.purpose }, d.seconds);
      },
      reachable: (on) => mx.arbiterReachable.set(on ? 1 : 0),
      pending: (purpose) => mx.arbiterPending.set(purpose === null ? 0 : 1),
      unanswered: () => mx.arbiterUnanswered.inc(),
    });
  }

  private exit(reason: 'halted' | 'fenced', error: Error): void {
    if (this.terminal) return;
    this.terminal = reason;
    this.showRole('none');
    this.showProtected(false);
    for (const cb of this.exitListeners) cb(reason, error);
  }

  // ------------------------------------------------------------------------------------------ metrics

  private onTransition(t: Transition): void {
    const mx = this.metrics;
    const state = `${t.role}.${t.to}`;
    if (state !== this.shown.state) {
      if (this.shown.state) mx.state.set({ state: this.shown.state }, 0);
      mx.state.set({ state }, 1);
      this.shown.state = state;
    }
    this.showRole(this.terminal ? 'none' : t.role);
    if (t.epoch !== this.shown.epoch) {
      mx.epoch.set(t.epoch);
      this.shown.epoch = t.epoch;
    }
    this.showProtected(this.replication.isProtectedPrimary);
  }

  // A transition happens ~5 times per checkpoint, inside its pause, and role, epoch and protection rarely change
  // with it: the gauges hold what was last written and are written only when a value changes (labelled sets cost
  // microseconds each).
  private readonly shown = { state: '', role: '', epoch: Number.NaN, protected: undefined as boolean | undefined };
  private showRole(role: string): void {
    if (role === this.shown.role) return;
    setOneHot(this.metrics.role, 'role', NODE_ROLES, role);
    this.shown.role = role;
  }
  private showProtected(on: boolean): void {
    if (on === this.shown.protected) return;
    this.metrics.protectedState.set(on ? 1 : 0);
    this.shown.protected = on;
  }

  /** colo_link_reads_total from the node's totals (which only grow): the increase since the last look. */
  private refreshLinkReads(): void {
    const now = this.replication.replicationReads;
    const before = this.lastLinkReads;
    const inc = (into: (typeof LINK_READ_PLACES)[number], d: number) => {
      if (d > 0) this.metrics.linkReads.inc({ into }, d);
    };
    inc('ring', now.ringReads - before.ringReads);
    inc('fallback', now.fallbackReads - before.fallbackReads);
    inc('copied', now.copiedReads - before.copiedReads);
    this.lastLinkReads = now;
  }

  private refreshProxyMetrics(): void {
    if (this.proxyBytesReceived > 0) {
      this.metrics.replicationBytes.inc({ direction: 'received', channel: 'proxy' }, this.proxyBytesReceived);
      this.proxyBytesReceived = 0;
    }
    const received = this.replication.replicationBytesReceived;
    if (received > this.lastStreamBytesReceived) {
      this.metrics.replicationBytes.inc({ direction: 'received', channel: 'replication' }, received - this.lastStreamBytesReceived);
      this.lastStreamBytesReceived = received;
    }
    this.refreshLinkReads();
    const m = this.primaryProxy?.metrics() ?? this.secondaryProxy?.metrics();
    if (!m) return;
    const prev = this.lastProxyMetrics;
    const mx = this.metrics;
    for (const result of ['match', 'miscompare', 'stale'] as const) {
      const d = m.compare[result] - (prev?.compare[result] ?? 0);
      if (d > 0) mx.outputCompare.inc({ result }, d);
    }
    const sent = m.bytesOut - (prev?.bytesOut ?? 0);
    if (sent > 0 && this.replication.role === 'secondary') mx.replicationBytes.inc({ direction: 'sent', channel: 'proxy' }, sent);
    mx.heldOutputBytes.set(m.heldBytes);
    mx.retainedInputEvents.set(m.retainedInputEvents);
    this.lastProxyMetrics = m;
  }
}
