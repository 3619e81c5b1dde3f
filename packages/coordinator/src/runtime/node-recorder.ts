import { checkpointAbort } from './checkpoint-aborts.js';
import { PerformanceObserver } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ColoNode } from '../node/colo-node.js';
import type { Transition } from '../node/transitions.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import type { AppliedCheckpointTiming } from '../engine/secondary-engine.js';
import type { OutputTotals, ProxyMetrics } from '../proxy/metrics.js';
import type { PeerLink } from '../transport/index.js';
import { NODE_ROLES, setOneHot, type NodeMetrics, type NodeTotals } from '../observability/metrics.js';
import { SlowCheckpointWatch, type CheckpointTiming, type SlowCheckpoint } from '../observability/slow-checkpoints.js';

export interface NodeRecorderOptions {
  metrics: NodeMetrics;
  node: ColoNode;
  /** The output proxy of the moment (primary's or secondary's), for its gauges (held output, retained input). */
  output: () => ProxyMetrics | undefined;
  /** What the node's proxies count over its life. */
  outputTotals: OutputTotals;
  /** The client service is open (colo_service_up). */
  serving: () => boolean;
  /** Attribute the collector's pauses to checkpoints (ProtectedNodeOptions.watchCollector). */
  watchCollector: boolean;
  logger: Logger;
}

/**
 * A node's metrics and its slow-checkpoint reports, from the node's events: transitions (state, role, epoch,
 * protection), checkpoints (durations, pages, bytes, phases), applied checkpoints, promotions, the arbiter's
 * answers. What is counted on a hot path (comparisons, bytes on the links, socket reads) stays a running total
 * where it is counted (the node's, its proxies' OutputTotals, the proxy link's bytes here) and the metrics read
 * them at each scrape (totals()).
 */
export class NodeRecorder {
  private readonly o: NodeRecorderOptions;
  private readonly mx: NodeMetrics;
  private readonly log: Logger;
  /**
   * This node's part of each checkpoint (primary: the pause; secondary: first record to applied), the slow ones,
   * and the collector's time inside each (fed by the 'gc' observer). A new one at promotion: a secondary's
   * durations are no median for a primary's pauses.
   */
  private slowCheckpoints = new SlowCheckpointWatch();
  private gcObserver: PerformanceObserver | undefined;
  private ended = false;
  private plannedFailover = false;
  private failoverCount = 0;
  /** Main-stream bytes sent, as the checkpoints report them. */
  private replicationBytesSent = 0;
  /** Proxy-link bytes received, over every proxy link. */
  private proxyBytesReceived = 0;
  private readonly countedProxyLinks = new WeakSet<PeerLink>();

  constructor(options: NodeRecorderOptions) {
    this.o = options;
    this.mx = options.metrics;
    this.log = options.logger;
    const node = options.node;
    node.onTransition((t) => this.transition(t));
    node.on('checkpoint', (m) => this.checkpoint(m));
    node.on('applied', (index, _d, timing) => this.applied(index, timing));
    node.on('promoted', () => this.promoted());
    node.on('peerLost', (_reason, cause) => this.mx.peerLosses.inc({ cause }));
    node.on('linkRefused', (code) => this.mx.linkRefusals.inc({ code }));
    this.watchArbiter();
    this.mx.readTotalsFrom(() => this.totals());
  }

  /** Failovers this node took over in (a count for status; the metric has it by reason). */
  get failovers(): number {
    return this.failoverCount;
  }

  start(): void {
    if (this.o.watchCollector) {
      // Collections, on the same clock as the pause windows (entries start relative to performance.timeOrigin).
      this.gcObserver = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) this.slowCheckpoints.collected({ start: e.startTime, duration: e.duration });
      });
      this.gcObserver.observe({ entryTypes: ['gc'] });
    }
  }

  stop(): void {
    this.gcObserver?.disconnect();
  }

  /** A promoted node serves clients, `seconds` after it lost its primary. */
  failoverServed(seconds: number): void {
    this.mx.failoverDuration.observe(seconds);
  }

  /** A promote or demote hook ended (exit code 0: ok). */
  hookRan(hook: 'promote' | 'demote', code: number | null): void {
    this.mx.hookRuns.inc({ hook, result: code === 0 ? 'ok' : 'failed' });
  }

  /** The next promotion is an operator's (admin API failover), not a lost primary. */
  planned(): void {
    this.plannedFailover = true;
  }

  /** The node stopped acting for good (fenced, halted): no role, not protected. */
  end(): void {
    this.ended = true;
    this.showRole('none');
    this.showProtected(false);
  }

  /** A proxy link's heartbeat round trips. */
  proxyLink(link: PeerLink): void {
    link.onRtt((s) => this.mx.heartbeatRtt.observe(s));
  }

  /**
   * Counts the proxy link's bytes, from when its proxy reads it: a link holds what arrives until it has a reader,
   * and a counter subscribed earlier would take the secondary's first barrier (sent before the synchronisation
   * described the guest the secondary proxy is made for) to nobody. A running total, read at each scrape: a
   * labelled prom-client inc() per message showed in CPU profiles.
   */
  countProxyBytes(link: PeerLink): void {
    if (this.countedProxyLinks.has(link)) return;
    this.countedProxyLinks.add(link);
    link.onData((b) => {
      this.proxyBytesReceived += b.byteLength;
    });
  }

  /** What the metrics show of the running totals, as they are now. */
  private totals(): NodeTotals {
    const node = this.o.node;
    const t = this.o.outputTotals;
    const reads = node.replicationReads;
    const output = this.o.output();
    const sync = node.syncProgress;
    return {
      replicationBytes: {
        sent: { replication: this.replicationBytesSent, proxy: t.comparedBytesOut },
        received: { replication: node.replicationBytesReceived, proxy: this.proxyBytesReceived },
      },
      linkReads: { ring: reads.ringReads, fallback: reads.fallbackReads, copied: reads.copiedReads },
      outputCompare: t.compare,
      heldOutputBytes: output?.heldBytes ?? 0,
      retainedInputEvents: output?.retainedInputEvents ?? 0,
      serviceUp: this.o.serving(),
      linksUp: node.linksUp,
      sync: sync ? { round: sync.round, remainingPages: sync.totalPages - sync.pagesSent } : null,
    };
  }

  // ------------------------------------------------------------------------------------------ events

  private transition(t: Transition): void {
    const mx = this.mx;
    const aborted = checkpointAbort(t);
    if (aborted) mx.checkpointAborts.inc({ cause: aborted });
    const state = `${t.role}.${t.to}`;
    if (state !== this.shown.state) {
      if (this.shown.state) mx.state.set({ state: this.shown.state }, 0);
      mx.state.set({ state }, 1);
      this.shown.state = state;
    }
    this.showRole(this.ended ? 'none' : t.role);
    if (t.epoch !== this.shown.epoch) {
      mx.epoch.set(t.epoch);
      this.shown.epoch = t.epoch;
    }
    this.showProtected(this.o.node.isProtectedPrimary);
  }

  private checkpoint(m: CheckpointMeasurement): void {
    const mx = this.mx;
    mx.checkpointDuration.observe({ reason: m.reason }, m.pauseSeconds);
    mx.checkpoints.inc({ reason: m.reason });
    mx.checkpointPages.observe(m.pages);
    if (m.deltaPages > 0) mx.checkpointDeltaPages.inc(m.deltaPages);
    if (m.resentPages > 0) mx.checkpointResentPages.inc(m.resentPages);
    mx.checkpointBytes.observe(m.bytes);
    this.replicationBytesSent += m.bytes;
    mx.lastCheckpointTime.set(m.at / 1000);
    for (const [phase, seconds] of Object.entries(m.phases)) if (typeof seconds === 'number') mx.checkpointPhaseDuration.observe({ phase }, seconds);
    if (m.reason === 'initial') mx.initialSyncDuration.set(m.durationSeconds);
    this.watchCheckpoint({ seq: m.seq, reason: m.reason, seconds: m.pauseSeconds, window: m.pauseWindow, phases: m.phases, pages: m.pages });
  }

  /** Secondary: checkpoint `index` (0 = initial) applied. */
  private applied(index: number, timing: AppliedCheckpointTiming): void {
    this.watchCheckpoint({
      seq: index,
      reason: index === 0 ? 'initial' : 'checkpoint',
      seconds: (timing.end - timing.start) / 1000,
      window: timing,
      pages: timing.pages,
    });
    this.mx.lastCheckpointTime.set(Date.now() / 1000);
  }

  private promoted(): void {
    this.failoverCount++;
    this.slowCheckpoints = new SlowCheckpointWatch();
    this.mx.failovers.inc({ reason: this.plannedFailover ? 'manual' : 'primary_lost' });
    this.plannedFailover = false;
  }

  /** The arbiter's metrics: which one, reachable, a request waiting, answers and their time, unanswered requests. */
  private watchArbiter(): void {
    const mx = this.mx;
    mx.arbiterInfo.set({ kind: this.o.node.arbiterKind }, 1);
    this.o.node.onArbiter({
      decided: (d) => {
        mx.arbiterDecisions.inc({ purpose: d.purpose, outcome: d.won ? 'won' : 'lost' });
        mx.arbiterDecisionDuration.observe({ purpose: d.purpose }, d.seconds);
      },
      reachable: (on) => mx.arbiterReachable.set(on ? 1 : 0),
      pending: (purpose) => mx.arbiterPending.set(purpose === null ? 0 : 1),
      unanswered: () => mx.arbiterUnanswered.inc(),
    });
  }

  // ------------------------------------------------------------------------------------------ slow checkpoints

  /** Both roles: a checkpoint's collector time and, when it stands out, a counted and (rate-limited) logged report. */
  private watchCheckpoint(t: CheckpointTiming): void {
    const verdict = this.slowCheckpoints.checkpoint(t);
    if (verdict.collectorSeconds > 0) this.mx.checkpointCollectorSeconds.inc(verdict.collectorSeconds);
    if (verdict.slow) this.mx.slowCheckpoints.inc();
    if (verdict.report) this.reportSlowCheckpoint(verdict.report);
  }

  /** One warn line per slow checkpoint (rate-limited), with what it was made of and the likely cause. */
  private reportSlowCheckpoint(r: SlowCheckpoint): void {
    const ms = (s: number) => Math.round(s * 1e5) / 100;
    const primary = this.o.node.role === 'primary';
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

  // ------------------------------------------------------------------------------------------ gauges

  // A transition happens ~5 times per checkpoint, inside its pause, and role, epoch and protection rarely change
  // with it: the gauges hold what was last written and are written only when a value changes (labelled sets cost
  // microseconds each).
  private readonly shown = { state: '', role: '', epoch: Number.NaN, protected: undefined as boolean | undefined };
  private showRole(role: string): void {
    if (role === this.shown.role) return;
    setOneHot(this.mx.role, 'role', NODE_ROLES, role);
    this.shown.role = role;
  }
  private showProtected(on: boolean): void {
    if (on === this.shown.protected) return;
    this.mx.protectedState.set(on ? 1 : 0);
    this.shown.protected = on;
  }
}
