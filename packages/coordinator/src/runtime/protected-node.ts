import { createServer } from 'node:net';
import type { Domain } from '@colo/domain';
import type { Logger } from 'pino';
import { startAdminServer, type AdminServer } from '../admin/server.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import { Extension, type GuestIdentity } from '../engine/extensions.js';
import { NODE_DEFAULTS, type OutputOptions } from '../defaults.js';
import type { ArbitrationStatus } from '../node/arbitration.js';
import type { SyncProgress } from '../node/status.js';
import { ColoNode } from '../node/colo-node.js';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import type { ColoNodeOptions } from '../node/options.js';
import { collectProcessMetrics, createNodeMetrics, type NodeMetrics } from '../observability/metrics.js';
import { PrimaryProxy, type PrimaryProxyOptions } from '../proxy/primary-proxy.js';
import { SecondaryProxy } from '../proxy/secondary-proxy.js';
import { newOutputTotals, type ProxyMetrics } from '../proxy/metrics.js';
import type { NodeRole, ReplicationMode } from '../statechart/types.js';
import { PROTOCOL_VERSION, wsNetwork, type PeerLink, type PeerNetwork } from '../transport/index.js';
import { runServiceHook, type ServiceHook } from './service-hooks.js';
import { NodeRecorder } from './node-recorder.js';
import { NodeStateFile, readNodeState } from './node-state.js';
import { unprotectedReason } from './unprotected-reason.js';
import { BlackholeLink } from '../node/blackhole-link.js';

/**
 * A protected node's options: the replication node's (ColoNodeOptions, the same names and meanings: nothing is
 * reshaped between the two layers) plus what the client path, the admin API and the metrics need. The proxy link
 * to the peer takes the replication link's network, security, heartbeat and largest frame.
 */
export interface ProtectedNodeOptions extends Omit<ColoNodeOptions, 'onSideLink' | 'sideChannels'> {
  version: string;
  /** The output rule's bounds on held output (default NODE_DEFAULTS.output). */
  output?: Partial<OutputOptions>;
  /**
   * Where clients reach the guest while this node is the primary. Without `listen` there is no TCP service: a
   * driver with its own client path (a simulation, another hypervisor's) gets each primary proxy from onServing.
   */
  service: {
    listen?: { host: string; port: number };
    /** Run (sh -c) each time this node starts serving as primary: at start as primary, at a promotion. */
    promoteHook?: string;
    /** Run each time it stops serving: fenced (another node won the epoch), stopped, or its guest lost. */
    demoteHook?: string;
    /** A promoted node retries opening the service this long, then stops (default NODE_DEFAULTS.service). */
    openRetryMs?: number;
  };
  /** The admin API; allowCrash enables POST /crash (drills; off by default). */
  admin?: { listen: { host: string; port: number }; token?: string; allowCrash?: boolean; tls?: { cert: Buffer; key: Buffer } };
  /**
   * Also export the process's own metrics (prom-client's defaults: garbage-collection pauses by kind, event-loop
   * lag, CPU, heap, file descriptors). For a node that owns its process (`colo node`): they describe the process,
   * not the node, so a test or bench running several nodes in one process leaves them off.
   */
  processMetrics?: boolean;
  /**
   * node.state_dir: where the node keeps what it knows across its restarts (runtime/node-state.ts): its role and
   * the highest epoch it has seen, written when either changes. A node started with it begins at that epoch (as
   * a secondary it refuses a primary of an older one). Default: nothing persisted.
   */
  stateDir?: string;
  /**
   * Attribute the collector's pauses to checkpoints (the 'gc' performance entries). Default true. Off where the
   * node's clock is not the process's (a simulation: its checkpoints happen in simulated time).
   */
  watchCollector?: boolean;
  logger: Logger;
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
  sync: SyncProgress | null;
  /** The arbiter: kind, where, reachable, a request waiting, the last decision. */
  arbiter: ArbitrationStatus;
  /** Why the node does not protect the guest now (starting, synchronising, waiting for a secondary, for the arbiter, fenced ...); null when it does. */
  reason: string | null;
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
  /** What every proxy this node makes counts (comparisons, client and proxy bytes), over the node's life. */
  private readonly outputTotals = newOutputTotals();
  /** The node's metrics and slow-checkpoint reports, from its events. */
  private readonly recorder: NodeRecorder;
  private stopped = false;
  private readonly exitListeners = new Set<(reason: 'halted' | 'fenced', error: Error) => void>();
  /** node.state_dir's file, when set. */
  private readonly stateFile: NodeStateFile | undefined;
  private stateWriteFailed = false;

  /** Throws COLO_STATE_CORRUPT when options.stateDir holds a state that is not this node's or does not parse. */
  constructor(options: ProtectedNodeOptions) {
    this.o = options;
    this.log = options.logger.child({ component: 'runtime' });
    this.network = options.network ?? wsNetwork;
    this.metrics = createNodeMetrics({ nodeId: options.nodeId, mode: options.mode, version: options.version });
    if (options.processMetrics) collectProcessMetrics(this.metrics.registry);
    const { version: _v, output: _o, service: _s, admin: _a, processMetrics: _p, watchCollector: _w, stateDir, ...replication } = options;
    const known = stateDir ? readNodeState(stateDir, options.nodeId) : null;
    this.stateFile = stateDir ? new NodeStateFile(stateDir, options.nodeId, known) : undefined;
    this.replication = new ColoNode({
      ...replication,
      // The highest epoch this node has seen survives its restarts: a stale former primary stays refused.
      epoch: Math.max(options.epoch ?? 0, known?.epoch ?? 0),
      hostGuest: (identity) => this.hostGuest(identity),
      // The proxy link is a second link of the same peer: dialled by a secondary before its replication link, so
      // input is mirrored from the first checkpoint on; lost with it.
      sideChannels: [{ channel: 'proxy', extensions: [Extension.INPUT_WATERMARK] }],
      onSideLink: (link) => (this.replication.role === 'primary' ? this.attachProxyLink(link) : this.joinedPrimary(link)),
    });
    const hooks = this.suspendHooks();
    this.replication.on('suspending', hooks.beforeSuspend);
    this.replication.on('resumed', hooks.afterResume);
    this.replication.on('checkpoint', (m) => this.onCheckpoint(m));
    this.replication.on('applied', (index) => this.onApplied(index));
    this.replication.on('unprotected', () => this.detachProxy('the replication link to the secondary ended'));
    this.replication.on('peerLost', (reason) => this.peerLost(reason));
    if (this.stateFile) this.replication.onTransition((t) => this.persist(t.role, t.epoch));
    // The arbiter's word on output (docs/output-rules.md): held from losing the peer until this node wins the
    // next epoch; held after a secondary attaches until the arbiter records the pair as protected.
    this.replication.on('deciding', () => {
      if (this.replication.role === 'primary') this.primaryProxy?.holdForDecision();
    });
    this.replication.on('continuing', () => this.primaryProxy?.continueAlone());
    this.replication.on('pairProtected', () => this.primaryProxy?.recorded());
    this.replication.on('promoted', (epoch) => void this.onPromoted(epoch));
    this.replication.on('halted', (e) => {
      if (e.code !== CoordinatorErrorCode.STOPPED) this.exit('halted', e);
    });
    this.replication.on('fenced', (e) => {
      void this.stoppedServing();
      void this.primaryProxy?.close();
      this.primaryProxy = undefined;
      this.exit('fenced', e);
    });
    this.recorder = new NodeRecorder({
      metrics: this.metrics,
      node: this.replication,
      output: () => this.primaryProxy?.metrics() ?? this.secondaryProxy?.metrics(),
      outputTotals: this.outputTotals,
      serving: () => this.serving && !this.terminal,
      watchCollector: options.watchCollector !== false,
      logger: this.log,
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

  /** Fails before anything listens when node.state_dir cannot be written (the file system's error: EACCES ...). */
  async start(): Promise<void> {
    const o = this.o;
    // A state directory that cannot be written fails the start, not a later promotion.
    this.stateFile?.record(this.replication.role, this.replication.epoch);
    this.recorder.start();
    if (o.admin) {
      this.admin = await startAdminServer({
        host: o.admin.listen.host,
        port: o.admin.listen.port,
        token: o.admin.token,
        allowCrash: o.admin.allowCrash === true,
        tls: o.admin.tls,
        logger: o.logger,
        target: {
          status: () => this.status(),
          ready: () => this.ready(),
          serving: () => this.serving && !this.terminal && this.replication.role === 'primary',
          metrics: async () => {
            return { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
          },
          checkpoint: async () => this.replication.requestCheckpoint('manual'),
          failover: async () => {
            this.recorder.planned();
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

    if (o.role === 'primary') {
      await this.startPrimaryProxy(o.domain!, 1);
      // Blackhole: the proxy's peer is nobody too; the checkpoints' completion releases output as a real
      // secondary's acknowledgements would.
      if (o.remus?.blackhole) {
        this.attachProxyLink(new BlackholeLink({ protocol: PROTOCOL_VERSION, channel: 'proxy', nodeId: o.nodeId, role: 'primary', mode: o.mode, epoch: this.replication.epoch, extensions: [] }));
      }
      await this.replication.start();
    } else {
      await this.canServe();
      await this.replication.start();
    }
  }

  /** Records a transition's role and epoch in node.state_dir; a failed write is logged (once until one succeeds). */
  private persist(role: NodeRole, epoch: number): void {
    try {
      this.stateFile!.record(role, epoch);
      this.stateWriteFailed = false;
    } catch (e) {
      if (!this.stateWriteFailed) this.log.error({ code: (e as NodeJS.ErrnoException).code, error: (e as Error).message, role, epoch }, 'could not write the node state (node.state_dir): a restart may not know this epoch');
      this.stateWriteFailed = true;
    }
  }

  /**
   * A secondary must be able to serve once it takes over: a service address another process holds would leave
   * it promoted with nobody to serve, so it refuses to start instead (COLO_SERVICE_UNAVAILABLE, `colo node` exit
   * 3), while the primary still serves. The port is bound and let go again: nothing listens until a promotion.
   */
  private async canServe(): Promise<void> {
    const listen = this.o.service.listen;
    if (!listen) return;
    const server = createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listen.port, listen.host, () => resolve());
      });
    } catch (e) {
      throw new CoordinatorError(
        CoordinatorErrorCode.SERVICE_UNAVAILABLE,
        `service.listen ${listen.host}:${listen.port} cannot be opened on this host (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): this secondary could not serve clients after a failover; free the port or choose another`,
        { cause: e },
      );
    } finally {
      await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
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
    this.recorder.stop();
    // The replication node first: it ends the peer's links, the proxy link among them, as a stop (a proxy link
    // closed before it would lose the peer while the node still acts on it).
    await this.replication.stop();
    this.proxyLink?.close('node stopping');
    await this.primaryProxy?.close();
    await this.stoppedServing();
    this.secondaryProxy?.close();
    await this.admin?.close();
    this.domain?.destroy();
  }

  status(): ProtectedNodeStatus {
    const s = this.replication.status();
    const lc = s.lastCheckpoint;
    const status: Omit<ProtectedNodeStatus, 'reason'> = {
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
      failovers: this.recorder.failovers,
      lastError: s.lastError,
      sync: s.sync,
      arbiter: s.arbiter,
      version: this.o.version,
    };
    return { ...status, reason: unprotectedReason(status, this.serving) };
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
  /** When a secondary lost its primary (the failover's start, for colo_failover_duration_seconds). */
  private primaryLostAt: number | undefined;
  /** The client service is open (a primary serving clients, or ready to: no service.listen). */
  private serving = false;

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
      totals: this.outputTotals,
      barrierTimeoutMs: this.o.checkpoint?.phaseTimeoutMs ?? NODE_DEFAULTS.checkpoint.phaseTimeoutMs,
    });
    this.recorder.countProxyBytes(link);
    this.secondaryProxy.onLinkError((e) => {
      this.log.error({ err: e }, 'the primary sent invalid proxy traffic: dropping the primary');
      this.replication.dropPrimary(e.message);
    });
    return guest;
  }

  /** A primary proxy's service (none without service.listen) and output bounds. */
  private servingOptions(): Omit<PrimaryProxyOptions, 'domain' | 'firstConnectionId'> {
    const listen = this.o.service.listen;
    return {
      ...(listen ? { service: { host: listen.host, port: listen.port } } : {}),
      totals: this.outputTotals,
      observeHold: (seconds: number) => this.metrics.outputHold.observe(seconds),
      compareTimeoutMs: this.o.checkpoint?.compareTimeoutMs ?? NODE_DEFAULTS.checkpoint.compareTimeoutMs,
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
    this.startedServing();
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
    if (!this.primaryProxy || !this.serving || this.proxyAttached || this.replication.role !== 'primary') {
      link.close('this primary is not accepting a proxy link now');
      return;
    }
    this.proxyLink = link;
    this.proxyAttached = true;
    this.primaryProxy.holdUntilRecorded();
    this.primaryProxy.attachSecondary(link, this.o.mode, { inputWatermark: link.extensions.includes(Extension.INPUT_WATERMARK) });
    this.recorder.countProxyBytes(link);
    this.recorder.proxyLink(link);
    // A secondary that opens a proxy link but never completes its replication link must not hold output forever.
    const timer = setTimeout(() => {
      if (this.proxyLink === link && !this.replication.status().protected && !this.o.remus?.blackhole) {
        this.log.warn({ peer: link.peerHello.nodeId }, 'the secondary did not synchronise in time: dropping it');
        this.replication.dropSecondary('the secondary did not synchronise in time');
      }
    }, 120_000);
    timer.unref();
    link.onClose(() => clearTimeout(timer));
    this.log.info({ peer: link.peerHello.nodeId, remote: link.remoteAddress }, 'proxy link attached');
  }

  /** Secondary: the proxy link to the primary, dialled before the replication link. */
  private joinedPrimary(link: PeerLink): void {
    this.proxyLink = link;
    this.recorder.proxyLink(link);
  }

  /** The peer's links are gone together (the node's one 'peerLost'): the proxy side follows. */
  private peerLost(reason: string): void {
    if (this.stopped) return;
    if (this.replication.role === 'secondary') this.primaryLostAt = performance.now();
    // The role has logged the loss and what follows (warn); this line ties the proxy side to it.
    this.log.debug({ reason }, 'the peer is lost');
    if (this.replication.role === 'primary') this.detachProxy(reason);
    else this.proxyLink = undefined;
  }

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
  }

  /** Secondary: checkpoint `index` (0 = initial) applied; the guest is still suspended. */
  private onApplied(index: number): void {
    this.secondaryProxy?.checkpointApplied(index + 1).catch((e: Error) => {
      if (this.stopped || this.replication.role !== 'secondary') return;
      this.log.error({ err: e }, 'no barrier for an applied checkpoint: dropping the primary');
      this.replication.dropPrimary(e.message);
    });
  }

  private async onPromoted(epoch: number): Promise<void> {
    this.proxyAttached = false;
    const secondary = this.secondaryProxy;
    this.secondaryProxy = undefined;
    this.proxyLink?.close('promoted');
    this.proxyLink = undefined;
    const proxy = secondary
      ? secondary.handOver(this.servingOptions())
      : new PrimaryProxy({ domain: this.replication.domain!, firstConnectionId: 1, ...this.servingOptions() });
    this.primaryProxy = proxy;
    this.wirePrimaryProxy(proxy);
    try {
      await this.openService(proxy);
    } catch (e) {
      // Never a half-primary (the primary role without a service, taking secondaries it cannot serve with): the
      // node stops acting, loudly, and its guest with it. Its peer is gone already (that is why it was promoted).
      const error = new CoordinatorError(
        CoordinatorErrorCode.SERVICE_UNAVAILABLE,
        `promoted at epoch ${epoch} but the client service could not be opened: ${(e as Error).message}`,
        { cause: e },
      );
      this.log.error({ err: error, epoch }, 'cannot serve after the promotion: this node stops');
      void proxy.close();
      this.exit('halted', error);
      return;
    }
    const seconds = this.primaryLostAt === undefined ? undefined : (performance.now() - this.primaryLostAt) / 1000;
    this.log.warn({ epoch, service: this.serviceAddress, seconds }, 'took over: serving clients as primary');
    if (seconds !== undefined) this.recorder.failoverServed(seconds);
    this.startedServing();
  }

  /** The client service is open: colo_service_up, /primary, and the promote hook (a virtual IP moves here). */
  private startedServing(): void {
    this.serving = true;
    void this.runHook('promote');
  }

  /** This node no longer serves (fenced, stopping, stopped acting): the demote hook gives the address up. */
  private async stoppedServing(): Promise<void> {
    if (!this.serving) return;
    this.serving = false;
    await this.runHook('demote');
  }

  private async runHook(hook: ServiceHook): Promise<void> {
    const command = hook === 'promote' ? this.o.service.promoteHook : this.o.service.demoteHook;
    if (!command) return;
    const address = this.serviceAddress ?? this.o.service.listen ?? null;
    const code = await runServiceHook(hook, command, { COLO_NODE_ID: this.o.nodeId, COLO_EPOCH: String(this.replication.epoch), COLO_SERVICE_ADDRESS: address ? `${address.host}:${address.port}` : '' }, this.log);
    this.recorder.hookRan(hook, code);
  }

  /**
   * Opens a promoted node's service, again and again for service.openRetryMs (a port still held by a process on
   * its way out frees within seconds); secondaries are refused meanwhile (not serving). The last error if not.
   */
  private async openService(proxy: PrimaryProxy): Promise<void> {
    const deadline = performance.now() + (this.o.service.openRetryMs ?? NODE_DEFAULTS.service.openRetryMs);
    for (let delay = 250; ; delay = Math.min(2 * delay, 4000)) {
      try {
        await proxy.start();
        return;
      } catch (e) {
        if (this.stopped || performance.now() + delay > deadline) throw e;
        this.log.error({ err: e, retryInMs: delay }, 'promoted, but the client service cannot be opened: retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private exit(reason: 'halted' | 'fenced', error: Error): void {
    if (this.terminal) return;
    this.terminal = reason;
    void this.stoppedServing();
    this.recorder.end();
    for (const cb of this.exitListeners) cb(reason, error);
  }
}
