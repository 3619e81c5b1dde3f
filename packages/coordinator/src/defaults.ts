/**
 * Every default of a node, defined here and nowhere else: the library applies them where an option is left out,
 * and the CLI's settings table (packages/cli/src/config/schema.ts) shows, documents and parses the same values.
 * Before this table the two disagreed on four of them (a COLO compare timeout of 100 ms against 1 s, and the phase
 * timeout, the COLO interval and the held-output bound), so a node built as a library behaved unlike `colo node`.
 *
 * Units: milliseconds and bytes.
 */
const MiB = 1024 * 1024;

export const NODE_DEFAULTS = {
  heartbeat: {
    /** Time between heartbeats on each link. */
    intervalMs: 100,
    /** Nothing received for this long: the link is lost. */
    timeoutMs: 1000,
  },
  timings: {
    /** Longest wait for one handshake step of the peer (SUSPENDED, dirty list, READY, RESUMED, ACK). */
    phaseTimeoutMs: 10_000,
    /** Longest time without one complete record while a checkpoint or the initial synchronisation streams in. */
    stallTimeoutMs: 10_000,
    /** Remus: time between checkpoints (Xen's xl default). */
    remusIntervalMs: 200,
    /** COLO: longest time between checkpoints while outputs keep matching. */
    coloMaxIntervalMs: 5_000,
  },
  output: {
    /** COLO: output waiting this long for its twin triggers a checkpoint (stale). */
    compareTimeoutMs: 100,
    /** Held client output of one connection beyond which the node checkpoints early. */
    maxHeldPerConnection: 1 * MiB,
    /** Held client output over all connections beyond which the node checkpoints early. */
    maxHeldTotal: 64 * MiB,
  },
  /** The largest WebSocket message accepted from the peer, on the replication and the proxy links. */
  maxFrameBytes: 16 * MiB,
  precopy: {
    /** Live pre-copy rounds before the stop-and-copy (Xen: 5). */
    maxRounds: 5,
    /** Stop the live rounds once fewer pages than this are dirty (Xen: 50). */
    minDirtyPages: 50,
  },
  /** Longest wait for one answer from the arbiter before the request is made again. */
  arbiterTimeoutMs: 2000,
} as const;
