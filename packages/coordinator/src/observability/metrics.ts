import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric a node exports, in one place. Base units (seconds, bytes), `_total` on counters, `colo_` prefix.
 * docs/metrics.md lists the same set; a test keeps the two in step.
 */

/** Checkpoint pauses are milliseconds to a few hundred ms; the tail up to 10 s catches a stalled peer. */
const PAUSE_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];
const RTT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const PAGE_BUCKETS = [0, 1, 10, 100, 1_000, 10_000, 50_000, 100_000, 500_000];
const BYTE_BUCKETS = PAGE_BUCKETS.map((p) => p * 4096);
/** An arbiter answers in about a millisecond (local) to tens of ms (etcd across hosts); retries stretch it to minutes. */
const DECISION_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export const CHECKPOINT_REASONS = ['initial', 'miscompare', 'stale', 'periodic', 'manual', 'output_bound'] as const;
export const CHECKPOINT_PHASES = ['suspend', 'secondary_suspend', 'transfer', 'secondary_apply', 'resume'] as const;
export const NODE_ROLES = ['primary', 'secondary'] as const;
/** What a node asks the arbiter for (colo_arbiter_decisions_total's `purpose`). */
export const ARBITER_PURPOSES = ['register', 'protect', 'continue', 'promote'] as const;
/** colo_failovers_total's `reason` values: an operator's failover (admin API), or the primary lost. */
export const FAILOVER_REASONS = ['manual', 'primary_lost'] as const;
/** colo_link_up's channels. */
export const LINK_CHANNELS = ['replication', 'proxy'] as const;
/** colo_peer_losses_total's usual causes (others appear as they happen). */
const PEER_LOSS_CAUSES = ['LINK_HEARTBEAT_TIMEOUT', 'LINK_CLOSED', 'LINK_SOCKET_ERROR', 'dropped'] as const;
/** colo_checkpoint_aborts_total's causes: why a checkpoint under way was abandoned (runtime/checkpoint-aborts.ts). */
export const ABORT_CAUSES = ['timeout', 'peer_lost', 'stopped', 'protocol'] as const;
export type AbortCause = (typeof ABORT_CAUSES)[number];
/** colo_link_refusals_total's usual codes. */
const REFUSAL_CODES = ['LINK_AUTH_FAILED', 'LINK_AUTH_MISSING', 'LINK_TLS_FAILED', 'LINK_VERSION_MISMATCH', 'LINK_REFUSED'] as const;
/** colo_link_reads_total's `into` values. */
export const LINK_READ_PLACES = ['ring', 'fallback', 'copied'] as const;
/** colo_output_compare_total's `result` values. */
const COMPARE_RESULTS = ['match', 'miscompare', 'stale'] as const;

/**
 * What a node counts on its hot paths (bytes on the links, socket reads, output comparisons) as plain running
 * totals, each owned where it is counted and only growing over the node's life, plus the output gauges of the
 * moment. The metrics read them at each scrape (NodeMetrics.readTotalsFrom): nothing is pushed, nothing diffed.
 */
export interface NodeTotals {
  replicationBytes: { sent: { replication: number; proxy: number }; received: { replication: number; proxy: number } };
  linkReads: Readonly<Record<(typeof LINK_READ_PLACES)[number], number>>;
  outputCompare: Readonly<{ match: number; miscompare: number; stale: number }>;
  heldOutputBytes: number;
  retainedInputEvents: number;
  /** The client service is open (a primary serving). */
  serviceUp: boolean;
  /** The channels the peer has a link on now. */
  linksUp: readonly string[];
  /** Primary, while it synchronises a secondary: the pre-copy round and the pages of it still to send. */
  sync: { round: number; remainingPages: number } | null;
}

const NO_TOTALS: NodeTotals = {
  replicationBytes: { sent: { replication: 0, proxy: 0 }, received: { replication: 0, proxy: 0 } },
  linkReads: { ring: 0, fallback: 0, copied: 0 },
  outputCompare: { match: 0, miscompare: 0, stale: 0 },
  heldOutputBytes: 0,
  retainedInputEvents: 0,
  serviceUp: false,
  linksUp: [],
  sync: null,
};

export interface NodeMetrics {
  readonly registry: Registry;
  /** Where the scrape reads the node's running totals (the metrics show zeros until one is given). */
  readTotalsFrom(read: () => NodeTotals): void;
  checkpointDuration: Histogram<'reason'>;
  checkpointPhaseDuration: Histogram<'phase'>;
  checkpoints: Counter<'reason'>;
  checkpointPages: Histogram<string>;
  checkpointDeltaPages: Counter<string>;
  checkpointResentPages: Counter<string>;
  checkpointBytes: Histogram<string>;
  checkpointCollectorSeconds: Counter<string>;
  slowCheckpoints: Counter<string>;
  initialSyncDuration: Gauge<string>;
  replicationBytes: Counter<'direction' | 'channel'>;
  linkReads: Counter<'into'>;
  outputCompare: Counter<'result'>;
  heldOutputBytes: Gauge<string>;
  retainedInputEvents: Gauge<string>;
  serviceUp: Gauge<string>;
  linkUp: Gauge<'channel'>;
  peerLosses: Counter<'cause'>;
  checkpointAborts: Counter<'cause'>;
  outputHold: Histogram<string>;
  linkRefusals: Counter<'code'>;
  failoverDuration: Histogram<string>;
  hookRuns: Counter<'hook' | 'result'>;
  syncRound: Gauge<string>;
  syncRemainingPages: Gauge<string>;
  protectedState: Gauge<string>;
  role: Gauge<'role'>;
  state: Gauge<'state'>;
  epoch: Gauge<string>;
  failovers: Counter<'reason'>;
  heartbeatRtt: Histogram<string>;
  lastCheckpointTime: Gauge<string>;
  buildInfo: Gauge<'version' | 'mode' | 'node_id'>;
  arbiterInfo: Gauge<'kind'>;
  arbiterReachable: Gauge<string>;
  arbiterPending: Gauge<string>;
  arbiterDecisions: Counter<'purpose' | 'outcome'>;
  arbiterDecisionDuration: Histogram<'purpose'>;
  arbiterUnanswered: Counter<string>;
}

export function createNodeMetrics(opts: { nodeId: string; mode: string; version: string; registry?: Registry }): NodeMetrics {
  const registry = opts.registry ?? new Registry();
  const r = [registry];
  // One reading per scrape, shared by the nine metrics that show a part of it: a scrape runs their collect()s in
  // one turn of the event loop (no I/O between them), so the reading is dropped at the next turn.
  let read = (): NodeTotals => NO_TOTALS;
  let reading: NodeTotals | undefined;
  const totals = (): NodeTotals => {
    if (reading === undefined) {
      reading = read();
      setImmediate(() => (reading = undefined));
    }
    return reading;
  };
  const m: NodeMetrics = {
    registry,
    readTotalsFrom: (r) => {
      read = r;
      reading = undefined;
    },
    checkpointDuration: new Histogram({
      name: 'colo_checkpoint_duration_seconds',
      help: 'Pause the primary guest sees per checkpoint, from suspend to resume.',
      labelNames: ['reason'],
      buckets: PAUSE_BUCKETS,
      registers: r,
    }),
    checkpointPhaseDuration: new Histogram({
      name: 'colo_checkpoint_phase_duration_seconds',
      help: 'Duration of each phase of a checkpoint.',
      labelNames: ['phase'],
      buckets: PAUSE_BUCKETS,
      registers: r,
    }),
    checkpoints: new Counter({
      name: 'colo_checkpoints_total',
      help: 'Completed checkpoints by the reason that triggered them.',
      labelNames: ['reason'],
      registers: r,
    }),
    checkpointPages: new Histogram({
      name: 'colo_checkpoint_pages',
      help: 'Guest pages sent per checkpoint.',
      buckets: PAGE_BUCKETS,
      registers: r,
    }),
    checkpointDeltaPages: new Counter({
      name: 'colo_checkpoint_delta_pages_total',
      help: 'Pages checkpoints sent as deltas against the secondary\'s copy (page-delta extension; the rest of colo_checkpoint_pages went whole).',
      registers: r,
    }),
    checkpointResentPages: new Counter({
      name: 'colo_checkpoint_resent_pages_total',
      help: "Delta pages the secondary lacked the base of (its copy differed from what was sent), resent whole on its request (primary). Any increase means the secondary's memory drifted: look for bad memory or a bug.",
      registers: r,
    }),
    checkpointBytes: new Histogram({
      name: 'colo_checkpoint_bytes',
      help: 'Bytes of the main stream sent per checkpoint.',
      buckets: BYTE_BUCKETS,
      registers: r,
    }),
    checkpointCollectorSeconds: new Counter({
      name: 'colo_checkpoint_collector_seconds_total',
      help: "Time this node's JavaScript collector ran inside checkpoint pauses (primary).",
      registers: r,
    }),
    slowCheckpoints: new Counter({
      name: 'colo_slow_checkpoints_total',
      help: 'Checkpoints whose pause was at least 4 times the recent median and at least 5 ms (primary).',
      registers: r,
    }),
    initialSyncDuration: new Gauge({
      name: 'colo_initial_sync_duration_seconds',
      help: 'Duration of the last initial synchronisation (live migration) of a secondary.',
      registers: r,
    }),
    replicationBytes: new Counter({
      name: 'colo_replication_bytes_total',
      help: 'Bytes moved between the nodes, by direction and channel.',
      labelNames: ['direction', 'channel'],
      registers: r,
      collect() {
        const b = totals().replicationBytes;
        showTotals(this, [
          [{ direction: 'sent', channel: 'replication' }, b.sent.replication],
          [{ direction: 'sent', channel: 'proxy' }, b.sent.proxy],
          [{ direction: 'received', channel: 'replication' }, b.received.replication],
          [{ direction: 'received', channel: 'proxy' }, b.received.proxy],
        ]);
      },
    }),
    linkReads: new Counter({
      name: 'colo_link_reads_total',
      help: "Secondary: socket reads of the replication link by where they went: ring (reused memory, no copy), fallback (fresh memory: the ring's next region was still in use), copied (copied out before the link existed: the upgrade and the handshake).",
      labelNames: ['into'],
      registers: r,
      collect() {
        const t = totals().linkReads;
        showTotals(this, LINK_READ_PLACES.map((into) => [{ into }, t[into]]));
      },
    }),
    outputCompare: new Counter({
      name: 'colo_output_compare_total',
      help: 'Output comparisons in COLO mode by result (match, miscompare, stale).',
      labelNames: ['result'],
      registers: r,
      collect() {
        const c = totals().outputCompare;
        showTotals(this, COMPARE_RESULTS.map((result) => [{ result }, c[result]]));
      },
    }),
    heldOutputBytes: new Gauge({
      name: 'colo_held_output_bytes',
      help: 'Client output held back, waiting for its twin (COLO) or for a checkpoint acknowledgement (Remus).',
      registers: r,
      collect() {
        this.set(totals().heldOutputBytes);
      },
    }),
    retainedInputEvents: new Gauge({
      name: 'colo_input_retained_events',
      help: 'COLO secondary: client input events its guest processed and keeps, because a checkpoint may undo them.',
      registers: r,
      collect() {
        this.set(totals().retainedInputEvents);
      },
    }),
    serviceUp: new Gauge({
      name: 'colo_service_up',
      help: '1 while this node serves clients (a primary whose client service is open), else 0.',
      registers: r,
      collect() {
        this.set(totals().serviceUp ? 1 : 0);
      },
    }),
    linkUp: new Gauge({
      name: 'colo_link_up',
      help: '1 while the link to the peer on this channel (replication, proxy) is up, else 0.',
      labelNames: ['channel'],
      registers: r,
      collect() {
        const up = totals().linksUp;
        for (const channel of LINK_CHANNELS) this.set({ channel }, up.includes(channel) ? 1 : 0);
      },
    }),
    peerLosses: new Counter({
      name: 'colo_peer_losses_total',
      help: 'Peers lost (every link of the other node gone), by cause: the link error that ended them, or dropped.',
      labelNames: ['cause'],
      registers: r,
    }),
    linkRefusals: new Counter({
      name: 'colo_link_refusals_total',
      help: "Links a primary refused at the handshake, by code (LINK_AUTH_FAILED: wrong key; LINK_TLS_FAILED: another CA's certificate; ...).",
      labelNames: ['code'],
      registers: r,
    }),
    checkpointAborts: new Counter({
      name: 'colo_checkpoint_aborts_total',
      help: 'Checkpoints (the initial synchronisation included) abandoned before completing, by cause: timeout (a handshake step or the stream stalled), peer_lost, stopped (the node stopped, failed over, was fenced or lost its guest), protocol (a report out of place, a stream that did not decode).',
      labelNames: ['cause'],
      registers: r,
    }),
    outputHold: new Histogram({
      name: 'colo_output_hold_seconds',
      help: "Primary: how long each piece of the guest's output waited before it went to its client: the latency the output rule adds to a reply (COLO: its twin from the secondary; Remus: the checkpoint's acknowledgement; both: the arbiter's decision after losing the peer).",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    failoverDuration: new Histogram({
      name: 'colo_failover_duration_seconds',
      help: 'Promoted node: from losing the primary to serving clients (the arbiter decision, the takeover, the service).',
      buckets: DECISION_BUCKETS,
      registers: r,
    }),
    hookRuns: new Counter({
      name: 'colo_hook_runs_total',
      help: 'Runs of the promote and demote hooks, by hook and result (ok: exit 0; failed: anything else, a time-out included).',
      labelNames: ['hook', 'result'],
      registers: r,
    }),
    syncRound: new Gauge({
      name: 'colo_sync_round',
      help: 'Primary: the pre-copy round of the initial synchronisation running now; 0 when none runs.',
      registers: r,
      collect() {
        this.set(totals().sync?.round ?? 0);
      },
    }),
    syncRemainingPages: new Gauge({
      name: 'colo_sync_remaining_pages',
      help: 'Primary: pages of the current pre-copy round still to send; 0 when no synchronisation runs.',
      registers: r,
      collect() {
        this.set(totals().sync?.remainingPages ?? 0);
      },
    }),
    protectedState: new Gauge({
      name: 'colo_protected',
      help: '1 when this node is an active primary with a synchronised secondary, else 0.',
      registers: r,
    }),
    role: new Gauge({
      name: 'colo_role',
      help: 'The role this node acts in: 1 for the current role, 0 for the others.',
      labelNames: ['role'],
      registers: r,
    }),
    state: new Gauge({
      name: 'colo_state',
      help: 'The statechart state of this node: 1 for the current state, absent or 0 for the others.',
      labelNames: ['state'],
      registers: r,
    }),
    epoch: new Gauge({
      name: 'colo_epoch',
      help: 'The pair epoch this node knows (raised at every promotion).',
      registers: r,
    }),
    failovers: new Counter({
      name: 'colo_failovers_total',
      help: 'Promotions of this node to primary, by reason.',
      labelNames: ['reason'],
      registers: r,
    }),
    heartbeatRtt: new Histogram({
      name: 'colo_heartbeat_rtt_seconds',
      help: 'Round-trip time of heartbeats on the replication link.',
      buckets: RTT_BUCKETS,
      registers: r,
    }),
    lastCheckpointTime: new Gauge({
      name: 'colo_last_checkpoint_timestamp_seconds',
      help: 'Unix time of the last completed checkpoint.',
      registers: r,
    }),
    buildInfo: new Gauge({
      name: 'colo_build_info',
      help: 'Always 1; labels carry the version, the replication mode and the node id.',
      // node_id, not node: the scrape config's target label is `node` (a clash would rename this one exported_node).
      labelNames: ['version', 'mode', 'node_id'],
      registers: r,
    }),
    arbiterInfo: new Gauge({
      name: 'colo_arbiter_info',
      help: 'Always 1; the label names the arbiter that decides this node\'s role changes (none, local, etcd).',
      labelNames: ['kind'],
      registers: r,
    }),
    arbiterReachable: new Gauge({
      name: 'colo_arbiter_reachable',
      help: '1 if the last request to the arbiter was answered (or none was made yet), 0 if it was not.',
      registers: r,
    }),
    arbiterPending: new Gauge({
      name: 'colo_arbiter_pending',
      help: '1 while the node waits for the arbiter: having lost its peer, it holds its output and does not promote.',
      registers: r,
    }),
    arbiterDecisions: new Counter({
      name: 'colo_arbiter_decisions_total',
      help: 'Answered requests to the arbiter, by what was asked (register, protect, continue, promote) and outcome (won, lost).',
      labelNames: ['purpose', 'outcome'],
      registers: r,
    }),
    arbiterDecisionDuration: new Histogram({
      name: 'colo_arbiter_decision_seconds',
      help: 'From the first request to the arbiter\'s answer, retries included (on the failover path: continue, promote).',
      labelNames: ['purpose'],
      buckets: DECISION_BUCKETS,
      registers: r,
    }),
    arbiterUnanswered: new Counter({
      name: 'colo_arbiter_unanswered_total',
      help: 'Requests to the arbiter that got no answer (unreachable, timed out, refused credentials) and were made again.',
      registers: r,
    }),
  };
  m.buildInfo.set({ version: opts.version, mode: opts.mode, node_id: opts.nodeId }, 1);
  // Every series exists from the start at 0, so that increase() sees a node's first decision.
  for (const purpose of ARBITER_PURPOSES) for (const outcome of ['won', 'lost']) m.arbiterDecisions.inc({ purpose, outcome }, 0);
  m.arbiterReachable.set(1);
  m.arbiterPending.set(0);
  for (const reason of CHECKPOINT_REASONS) m.checkpoints.inc({ reason }, 0);
  // A node's first failover must be an increase from 0 that increase() sees, not a new series at 1.
  for (const reason of FAILOVER_REASONS) m.failovers.inc({ reason }, 0);
  for (const cause of PEER_LOSS_CAUSES) m.peerLosses.inc({ cause }, 0);
  for (const cause of ABORT_CAUSES) m.checkpointAborts.inc({ cause }, 0);
  for (const code of REFUSAL_CODES) m.linkRefusals.inc({ code }, 0);
  for (const hook of ['promote', 'demote']) for (const result of ['ok', 'failed']) m.hookRuns.inc({ hook, result }, 0);
  for (const role of NODE_ROLES) m.role.set({ role }, 0);
  m.protectedState.set(0);
  return m;
}

/**
 * A counter that shows a total owned elsewhere (one that only grows), as it is at the scrape. prom-client's
 * counters have inc() and reset() but no set(): inside collect(), a reset followed by one inc() per series shows
 * the totals exactly, every series included from the first scrape on (at 0, so that increase() sees the first).
 */
function showTotals<L extends string>(counter: Counter<L>, series: readonly (readonly [Partial<Record<L, string>>, number])[]): void {
  counter.reset();
  for (const [labels, value] of series) counter.inc(labels, value);
}

/** Marks `current` as the one active label value of a one-hot gauge. */
export function setOneHot<L extends string>(gauge: Gauge<L>, label: L, values: readonly string[], current: string): void {
  for (const v of values) gauge.set({ [label]: v } as Record<L, string>, v === current ? 1 : 0);
}

/**
 * Garbage-collection pauses that matter here are 0.5-15 ms (a collection inside a checkpoint adds to its pause):
 * finer buckets than prom-client's default, which start at 1 ms.
 */
const GC_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1];

/**
 * The process's own metrics on a node's registry: prom-client's defaults (`nodejs_gc_duration_seconds{kind}`,
 * `nodejs_eventloop_lag_*`, `process_cpu_*`, `nodejs_heap_*`, ...; docs/metrics.md). Once per process: each call
 * starts its own observers.
 */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, gcDurationBuckets: GC_BUCKETS });
}
