/**
 * Every default of a node, defined here and nowhere else: the library applies them where an option is left out,
 * and the CLI's settings table (packages/cli/src/config/schema.ts) shows, documents and parses the same values.
 * Before this table the two disagreed on four of them (a COLO compare timeout of 100 ms against 1 s, and the phase
 * timeout, the COLO interval and the held-output bound), so a node built as a library behaved unlike `colo node`.
 *
 * The tree is the settings' own: section `checkpoint`, key `max_interval` is `checkpoint.maxIntervalMs` here and
 * in the node's options (a duration's name ends in Ms), so that a setting keeps its name from the YAML file to
 * where it acts (the schema names the option of each setting; packages/cli/test/node-options.test.ts checks both).
 *
 * Units: milliseconds and bytes.
 */
const MiB = 1024 * 1024;

export const NODE_DEFAULTS = {
  replication: {
    /** The largest WebSocket message accepted from the peer, on the replication and the proxy links. */
    maxFrameBytes: 16 * MiB,
    /** Offer page deltas (the page-delta extension); used when both nodes offer it. */
    compression: true,
  },
  heartbeat: {
    /** Time between heartbeats on each link. */
    intervalMs: 100,
    /** Nothing received for this long: the link is lost. */
    timeoutMs: 1000,
  },
  checkpoint: {
    /** Remus: time between checkpoints (Xen's xl default). */
    remusIntervalMs: 200,
    /** COLO: longest time between checkpoints while outputs keep matching. */
    maxIntervalMs: 5_000,
    /** COLO: output waiting this long for its twin triggers a checkpoint (stale). */
    compareTimeoutMs: 100,
    /** Longest wait for one handshake step of the peer (SUSPENDED, dirty list, READY, RESUMED, ACK). */
    phaseTimeoutMs: 10_000,
    /** Longest time without one complete record while a checkpoint or the initial synchronisation streams in. */
    stallTimeoutMs: 10_000,
    /** Live pre-copy rounds of the initial synchronisation before the stop-and-copy (Xen: 5). */
    precopyMaxRounds: 5,
    /** Stop the live rounds once fewer pages than this are dirty (Xen: 50). */
    precopyMinDirty: 50,
  },
  output: {
    /** Held client output of one connection beyond which the node checkpoints early. */
    maxHeldPerConnection: 1 * MiB,
    /** Held client output over all connections beyond which the node checkpoints early. */
    maxHeldTotal: 64 * MiB,
  },
  remus: {
    /** Checkpoint into nothing (a Remus primary with no secondary): off. */
    blackhole: false,
  },
  service: {
    /**
     * A promoted node retries opening its client service (a port still held by a process on its way out) for
     * this long, then stops: a primary that cannot serve must not stay one.
     */
    openRetryMs: 30_000,
  },
  arbiter: {
    /** Longest wait for one answer from the arbiter before the request is made again. */
    timeoutMs: 2000,
  },
} as const;

/** The checkpoint section of a node's options (NODE_DEFAULTS.checkpoint's keys). */
export type CheckpointOptions = { -readonly [K in keyof typeof NODE_DEFAULTS.checkpoint]: number };
/** The output section of a protected node's options (NODE_DEFAULTS.output's keys). */
export type OutputOptions = { -readonly [K in keyof typeof NODE_DEFAULTS.output]: number };
