import type { Logger } from 'pino';
import { PAIR_HOLDER, type Arbiter, type EpochRecord } from '../arbiter/arbiter.js';
import { ArbiterError, ArbiterErrorCode } from '../arbiter/errors.js';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import type { NodeRole } from '../statechart/types.js';

/** What a node asked the arbiter for. */
export type DecisionPurpose = 'continue' | 'promote' | 'register' | 'protect';

/** One answered request to the arbiter. */
export interface Decision {
  purpose: DecisionPurpose;
  role: NodeRole;
  /** The epoch asked for. */
  epoch: number;
  won: boolean;
  /** The record the arbiter holds after the request. */
  current: EpochRecord | null;
  /** From the first request to the answer, retries included (seconds). */
  seconds: number;
  /** Requests that went unanswered before this one was. */
  unanswered: number;
  at: number;
}

export interface ArbitrationStatus {
  kind: string;
  where: string;
  /** The last request was answered (true before any request). */
  reachable: boolean;
  /** A request is waiting for the arbiter now (output held, no promotion). */
  pending: DecisionPurpose | null;
  lastDecision: Decision | null;
  lastError: { code: string; message: string } | null;
}

/** What an observer of a node's arbitration hears (metrics, logs); every callback is optional. */
export interface ArbitrationObserver {
  /** A request was answered. */
  decided?(d: Decision): void;
  /** The arbiter became reachable, or stopped answering. */
  reachable?(on: boolean): void;
  /** A request started waiting for the arbiter (its purpose), or stopped waiting (null). */
  pending?(purpose: DecisionPurpose | null): void;
  /** A request went unanswered and will be made again. */
  unanswered?(error: ArbiterError): void;
}

/** Retries of an unanswered request: soon at first, then once a second (liveness only: safety never waits on it). */
export const RETRY_MS: readonly number[] = [50, 100, 200, 500, 1000];
/**
 * Between requests the node reads the record this often: operators learn that the arbiter is unreachable while
 * the pair is still protected (before a failover needs it), and the connection stays open, so the decision on
 * the failover path does not pay for a new one. Nothing is decided from these reads.
 */
const CHECK_MS = 5000;

/**
 * A node's side of the arbiter: every request it makes, retried until answered, and what the answers were (for
 * status, metrics and logs). The rule it serves (docs/architecture.md, "The arbiter"): a node that lost its peer
 * acts alone only in an epoch it won with a compare-and-swap from the epoch the pair shared; the loser stops.
 */
export class Arbitration {
  private readonly arbiter: Arbiter;
  private readonly log: Logger;
  private reachable = true;
  /** Requests waiting for an answer now (recording the pair and a decision can overlap), oldest first. */
  private readonly waiting: DecisionPurpose[] = [];
  private pending: DecisionPurpose | null = null;
  private last: Decision | null = null;
  private lastError: ArbiterError | null = null;
  private closed = false;
  private readonly observers = new Set<ArbitrationObserver>();
  private wake: (() => void) | undefined;
  private checkTimer: NodeJS.Timeout | undefined;

  constructor(arbiter: Arbiter, logger: Logger) {
    this.arbiter = arbiter;
    this.log = logger;
  }

  get kind(): string {
    return this.arbiter.kind;
  }

  status(): ArbitrationStatus {
    return {
      kind: this.arbiter.kind,
      where: this.arbiter.where,
      reachable: this.reachable,
      pending: this.pending,
      lastDecision: this.last ? { ...this.last } : null,
      lastError: this.lastError ? { code: this.lastError.code, message: this.lastError.message } : null,
    };
  }

  /** Answers, reachability, waiting and unanswered requests, as they happen. Returns an unsubscribe function. */
  observe(o: ArbitrationObserver): () => void {
    this.observers.add(o);
    return () => this.observers.delete(o);
  }

  /**
   * A node starting as primary at `epoch` registers it. It may act if the pair has no record yet (it creates one
   * at `epoch`), or if it alone holds the record (it was unprotected and restarted: it takes the next epoch).
   * Refused with ARBITER_REFUSED when the other node or the protected pair holds the epoch: this node is a stale
   * former primary, and its guest is not the one clients were served from.
   */
  async register(nodeId: string, epoch: number): Promise<number> {
    const current = await this.ask('register', 'primary', epoch, () => this.arbiter.read().then((r) => ({ swapped: false, current: r })));
    if (current.current === null) {
      const d = await this.swap('register', 'primary', null, { epoch, holder: nodeId });
      if (d.won) return epoch;
      throw refused(nodeId, d.current);
    }
    if (current.current.holder !== nodeId) throw refused(nodeId, current.current);
    const next = Math.max(current.current.epoch + 1, epoch);
    const d = await this.swap('register', 'primary', current.current, { epoch: next, holder: nodeId });
    if (d.won) return next;
    throw refused(nodeId, d.current);
  }

  /**
   * After losing the peer: asks for epoch `epoch + 1`, compare-and-swap from `epoch` (whoever holds it). Resolves
   * with the decision once the arbiter answers, retrying while it cannot be reached; undefined if closed first.
   */
  async decide(nodeId: string, role: NodeRole, epoch: number): Promise<Decision | undefined> {
    try {
      return await this.swap(role === 'primary' ? 'continue' : 'promote', role, { epoch }, { epoch: epoch + 1, holder: nodeId });
    } catch (e) {
      if (this.closed) return undefined;
      throw e;
    }
  }

  /**
   * The pair became protected at `epoch`: the record moves from this node alone to the pair, so that this node,
   * if it restarts as primary from an empty guest, is refused (the secondary holds the state). Resolves with the
   * decision (lost: the epoch is no longer this node's), undefined if closed first.
   */
  async markProtected(nodeId: string, epoch: number): Promise<Decision | undefined> {
    try {
      return await this.swap('protect', 'primary', { epoch, holder: nodeId }, { epoch, holder: PAIR_HOLDER });
    } catch (e) {
      if (this.closed) return undefined;
      throw e;
    }
  }

  /** Reads the record now and every CHECK_MS while no request is waiting, for reachability only. */
  startChecking(intervalMs = CHECK_MS): void {
    if (this.checkTimer || this.closed) return;
    const check = () => {
      if (this.closed || this.pending !== null) return;
      this.arbiter.read().then(
        () => {
          if (this.closed || this.pending !== null) return;
          if (this.lastError) this.log.info({ arbiter: this.arbiter.kind }, 'arbiter: reachable again');
          this.lastError = null;
          this.setReachable(true);
        },
        (e: unknown) => {
          if (this.closed || this.pending !== null) return;
          const err = e instanceof ArbiterError ? e : new ArbiterError(ArbiterErrorCode.UNREACHABLE, String(e), { cause: e });
          if (!this.lastError || this.lastError.code !== err.code) this.log.warn({ err, arbiter: this.arbiter.kind }, 'arbiter: not answering (nothing depends on it while the pair is protected)');
          this.lastError = err;
          this.setReachable(false);
        },
      );
    };
    check();
    this.checkTimer = setInterval(check, intervalMs);
    this.checkTimer.unref();
  }

  /** Stops retrying; pending requests resolve undefined. Closes the arbiter's client. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.checkTimer);
    this.wake?.();
    await this.arbiter.close().catch(() => {});
  }

  private async swap(purpose: DecisionPurpose, role: NodeRole, expect: { epoch: number; holder?: string } | null, next: EpochRecord): Promise<Decision> {
    const r = await this.ask(purpose, role, next.epoch, () => this.arbiter.compareAndSwap(expect, next));
    // A request that was applied but whose answer was lost is retried and then finds its own record: a win.
    const won = r.swapped || (r.current !== null && r.current.epoch === next.epoch && r.current.holder === next.holder);
    const d: Decision = { ...r.decision, won, current: r.current };
    this.last = d;
    for (const o of this.observers) o.decided?.(d);
    // Registering at start and recording protection are the normal course (info); acting alone after losing the
    // peer is worth a warning even when won; a lost decision is an error.
    const level = won ? (purpose === 'protect' || purpose === 'register' ? 'info' : 'warn') : 'error';
    this.log[level](
      { purpose, epoch: next.epoch, won, current: r.current, ms: Math.round(d.seconds * 1e4) / 10, unanswered: d.unanswered, arbiter: this.arbiter.kind },
      `arbiter: ${purpose} at epoch ${next.epoch} ${won ? 'won' : `lost (the record is ${JSON.stringify(r.current)})`}`,
    );
    return d;
  }

  /** Runs `request` until the arbiter answers; throws only for errors that asking again cannot fix (or closed). */
  private async ask(
    purpose: DecisionPurpose,
    role: NodeRole,
    epoch: number,
    request: () => Promise<{ swapped: boolean; current: EpochRecord | null }>,
  ): Promise<{ swapped: boolean; current: EpochRecord | null; decision: Decision }> {
    const started = performance.now();
    this.waiting.push(purpose);
    this.setPending(purpose);
    let unanswered = 0;
    try {
      for (;;) {
        if (this.closed) throw new ArbiterError(ArbiterErrorCode.CLOSED, 'the node stopped while asking the arbiter');
        try {
          const r = await request();
          this.setReachable(true);
          this.lastError = null;
          const decision: Decision = { purpose, role, epoch, won: r.swapped, current: r.current, seconds: (performance.now() - started) / 1000, unanswered, at: Date.now() };
          return { ...r, decision };
        } catch (e) {
          const err = e instanceof ArbiterError ? e : new ArbiterError(ArbiterErrorCode.UNREACHABLE, String(e), { cause: e });
          // A corrupt record or bad credentials do not heal by asking again quickly, but they may be fixed by an
          // operator: keep asking (slowly), never guess.
          this.lastError = err;
          this.setReachable(false);
          unanswered++;
          for (const o of this.observers) o.unanswered?.(err);
          if (unanswered === 1 || unanswered % 20 === 0) {
            this.log.error({ err, purpose, epoch, unanswered }, `arbiter: no answer to ${purpose} at epoch ${epoch}; holding output and asking again`);
          }
          await this.pause(RETRY_MS[Math.min(unanswered - 1, RETRY_MS.length - 1)]!);
        }
      }
    } finally {
      this.waiting.splice(this.waiting.indexOf(purpose), 1);
      this.setPending(this.waiting.at(-1) ?? null);
    }
  }

  private setPending(purpose: DecisionPurpose | null): void {
    if (purpose === this.pending) return;
    this.pending = purpose;
    for (const o of this.observers) o.pending?.(purpose);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      this.wake = done;
      function done() {
        clearTimeout(t);
        resolve();
      }
    });
  }

  private setReachable(on: boolean): void {
    if (on === this.reachable) return;
    this.reachable = on;
    for (const o of this.observers) o.reachable?.(on);
  }
}

function refused(nodeId: string, current: EpochRecord | null): CoordinatorError {
  const by = current === null ? 'nobody' : current.holder === PAIR_HOLDER ? 'the protected pair (its secondary holds the guest)' : `node ${current.holder}`;
  return new CoordinatorError(
    CoordinatorErrorCode.ARBITER_REFUSED,
    `the arbiter refused ${nodeId} as primary: epoch ${current?.epoch ?? '?'} is held by ${by}. ` +
      'This node is a stale former primary: start it as a secondary of the current primary',
  );
}
