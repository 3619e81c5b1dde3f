import { NODE_DEFAULTS } from '../defaults.js';

/**
 * Liveness of one link. Every intervalMs it sends a ping (carrying a sequence number) and checks when the
 * peer was last heard from; any frame counts (data, ping, pong), so a peer busy streaming a checkpoint is
 * alive even while its pongs wait behind data frames. Silence for timeoutMs is a failure. Round-trip time is
 * measured from our ping to its pong.
 *
 * Knows no sockets: the link gives it a ping function and tells it when something arrived.
 */
export interface HeartbeatOptions {
  intervalMs: number;
  timeoutMs: number;
}

export const DEFAULT_HEARTBEAT: HeartbeatOptions = NODE_DEFAULTS.heartbeat;

/** Pings we remember waiting for a pong; older ones are forgotten (a pong that late says nothing useful). */
const MAX_OUTSTANDING = 64;

export interface HeartbeatHooks {
  ping(payload: Buffer): void;
  onTimeout(silentForMs: number): void;
  onRtt(seconds: number): void;
}

export class Heartbeat {
  private readonly opts: HeartbeatOptions;
  private readonly hooks: HeartbeatHooks;
  private timer: NodeJS.Timeout | undefined;
  private lastHeard = now();
  private seq = 0;
  private readonly outstanding = new Map<number, number>();
  /** While the local side deliberately stops reading, the peer's silence is our doing: do not judge it. */
  private judging = true;

  constructor(opts: HeartbeatOptions, hooks: HeartbeatHooks) {
    this.opts = opts;
    this.hooks = hooks;
  }

  start(): void {
    if (this.timer) return;
    this.lastHeard = now();
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.outstanding.clear();
  }

  /** Something arrived from the peer. */
  heard(): void {
    this.lastHeard = now();
  }

  /** A pong arrived: the peer is alive, and if it answers one of our pings, we have a round-trip time. */
  pong(payload: Buffer): void {
    this.heard();
    if (payload.length !== 8) return;
    const seq = Number(payload.readBigUInt64BE(0));
    const sentAt = this.outstanding.get(seq);
    if (sentAt === undefined) return;
    // Pongs come back in order; anything older than this one is never coming.
    for (const s of this.outstanding.keys()) {
      this.outstanding.delete(s);
      if (s === seq) break;
    }
    this.hooks.onRtt((now() - sentAt) / 1000);
  }

  /** Stop or resume judging the peer's silence (receive-side backpressure: we are not reading). */
  setJudging(judging: boolean): void {
    if (judging && !this.judging) this.lastHeard = now();
    this.judging = judging;
  }

  private tick(): void {
    const silent = now() - this.lastHeard;
    if (this.judging && silent >= this.opts.timeoutMs) {
      this.stop();
      this.hooks.onTimeout(silent);
      return;
    }
    const seq = this.seq++;
    const payload = Buffer.alloc(8);
    payload.writeBigUInt64BE(BigInt(seq));
    this.outstanding.set(seq, now());
    if (this.outstanding.size > MAX_OUTSTANDING) {
      const oldest = this.outstanding.keys().next().value;
      if (oldest !== undefined) this.outstanding.delete(oldest);
    }
    this.hooks.ping(payload);
  }
}

function now(): number {
  return performance.now();
}
