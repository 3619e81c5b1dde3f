import type { Logger } from 'pino';
import { PAIR_HOLDER, type Arbiter, type EpochRecord } from '../arbiter/arbiter.js';
import { ArbiterError, ArbiterErrorCode } from '../arbiter/errors.js';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { RETRY_MS } from '../node/arbitration.js';
import type { NodeRole } from '../statechart/types.js';
import { readNodeState, type NodeState } from './node-state.js';

/**
 * node.role auto: the role a node takes at start, from the arbiter's record of its pair and what the node
 * persisted (node-state.ts), never from a static `role: primary`. A node's guest dies with its process, so a node
 * that starts again holds nothing: it is primary only when nobody else can hold the guest.
 *
 * - The record is this node's alone: it ran unprotected (nothing backed its guest) and the guest went with it;
 *   it starts a new guest as primary at the next epoch.
 * - The record is the protected pair's, or the other node's: the other node holds the guest (or will, once it
 *   wins its promotion); this node joins it as secondary.
 * - No record and no persisted state: a new pair. Both nodes may start at once: each asks the arbiter to create
 *   the record in its name (a compare-and-swap from "no record"); the one that does is primary, the other one,
 *   reading the winner's record, secondary.
 * - No record but a persisted state: this node was a member and the record is gone (the arbiter's data lost, the
 *   pair renamed). Starting a new guest could serve it beside the real one: refused, COLO_PAIR_HISTORY_LOST.
 */
export type StartWhy = 'new-pair' | 'held-alone' | 'pair-protected' | 'other-holds';

export interface StartDecision {
  role: NodeRole;
  /** The highest epoch known at start (the record's, or the persisted one): the node's epoch to start from. */
  epoch: number;
  why: StartWhy;
  /** One line for logs and the operator. */
  reason: string;
}

/** The highest epoch the record and this node's state know of; -1 when neither knows one. */
function highestKnown(record: EpochRecord | null, state: NodeState | null): number {
  return Math.max(record?.epoch ?? -1, state?.epoch ?? -1);
}

/** The decision from a record and a persisted state; 'ask' when the pair is new and the arbiter must pick. */
export function chooseStartRole(nodeId: string, record: EpochRecord | null, state: NodeState | null): StartDecision | 'ask' {
  const known = Math.max(highestKnown(record, state), 0);
  if (record === null) {
    if (state === null) return 'ask';
    throw new CoordinatorError(
      CoordinatorErrorCode.HISTORY_LOST,
      `the arbiter has no record of this pair, but this node was its ${state.role} at epoch ${state.epoch} (its state directory says so): ` +
        'the record was lost or arbiter.pair changed. Find which node holds the guest; if none does, `colo claim` on the ' +
        'node that is to be primary',
    );
  }
  if (record.holder === nodeId) {
    return { role: 'primary', epoch: known, why: 'held-alone', reason: `this node held epoch ${record.epoch} alone (unprotected): its guest ended with it; it starts a new one as primary` };
  }
  if (record.holder === PAIR_HOLDER) {
    return { role: 'secondary', epoch: known, why: 'pair-protected', reason: `the pair was protected at epoch ${record.epoch}: the other node holds the guest; this node joins it as secondary` };
  }
  return { role: 'secondary', epoch: known, why: 'other-holds', reason: `node ${record.holder} holds epoch ${record.epoch}: this node joins it as secondary` };
}

export interface StartRoleOptions {
  nodeId: string;
  arbiter: Arbiter;
  /** node.state_dir: where the node's persisted state is (node-state.ts). */
  stateDir: string;
  logger: Logger;
  /** Stops the waiting for an arbiter that does not answer (SIGTERM at start). */
  signal?: AbortSignal;
}

/**
 * Decides the role at start (chooseStartRole), asking the arbiter until it answers: the role is never guessed
 * while it cannot be reached. Throws COLO_PAIR_HISTORY_LOST or COLO_STATE_CORRUPT for the operator, COLO_STOPPED
 * when `signal` aborts first.
 */
export async function decideStartRole(o: StartRoleOptions): Promise<StartDecision> {
  const state = readNodeState(o.stateDir, o.nodeId);
  let unanswered = 0;
  const asked = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
    for (;;) {
      if (o.signal?.aborted) throw new CoordinatorError(CoordinatorErrorCode.STOPPED, 'stopped while deciding the role at start');
      try {
        return await request();
      } catch (e) {
        const err = e instanceof ArbiterError ? e : new ArbiterError(ArbiterErrorCode.UNREACHABLE, String(e), { cause: e });
        unanswered++;
        if (unanswered === 1 || unanswered % 20 === 0) {
          o.logger.error({ code: err.code, error: err.message, unanswered, arbiter: o.arbiter.kind }, `arbiter: no answer to ${what}; the role at start waits for it`);
        }
        await pause(RETRY_MS[Math.min(unanswered - 1, RETRY_MS.length - 1)]!, o.signal);
      }
    }
  };
  for (;;) {
    const record = await asked('the read of the pair', () => o.arbiter.read());
    const chosen = chooseStartRole(o.nodeId, record, state);
    if (chosen !== 'ask') return chosen;
    const mine: EpochRecord = { epoch: 0, holder: o.nodeId };
    const r = await asked('the creation of the pair', () => o.arbiter.compareAndSwap(null, mine));
    // An answer lost and asked again finds the record it created: a win as well.
    if (r.swapped || (r.current?.holder === mine.holder && r.current.epoch === mine.epoch)) {
      return { role: 'primary', epoch: 0, why: 'new-pair', reason: 'a new pair: this node created its record first and starts as primary' };
    }
    // The other node created it first: read it again and join it.
  }
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** What `colo claim` found and did. */
export interface Claim {
  /** The record before. */
  before: EpochRecord | null;
  /** The record after: this node's alone, when claimed. */
  after: EpochRecord | null;
  claimed: boolean;
}

/**
 * An operator's decision, when no node can take the pair by itself (both hosts lost at once while protected: the
 * record says the pair's, and each restarted node waits as secondary for a primary that is gone; or the record
 * lost): the pair's next epoch becomes this node's alone, so that node.role auto starts it as primary with a new
 * guest and the other node joins it. The epoch is above the record's and this node's persisted one. Whatever guest
 * the other node still holds is given up: it loses its next decision and stands down. One compare-and-swap from the
 * record read, so a record that changed meanwhile is not overwritten (claimed: false). ArbiterError when the arbiter
 * cannot be reached.
 */
export async function claimPair(o: { nodeId: string; arbiter: Arbiter; stateDir?: string }): Promise<Claim> {
  const state = o.stateDir ? readNodeState(o.stateDir, o.nodeId) : null;
  const before = await o.arbiter.read();
  if (before?.holder === o.nodeId) return { before, after: before, claimed: true };
  const next: EpochRecord = { epoch: highestKnown(before, state) + 1, holder: o.nodeId };
  const r = await o.arbiter.compareAndSwap(before === null ? null : { epoch: before.epoch, holder: before.holder }, next);
  return { before, after: r.current, claimed: r.swapped };
}
