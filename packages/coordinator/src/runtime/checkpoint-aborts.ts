import { TIMER_EVENT, type Transition } from '../node/transitions.js';
import type { AbortCause } from '../observability/metrics.js';

/**
 * The states of each role's machine in which a checkpoint (the initial synchronisation included) is under way,
 * and the states it may go on to without being abandoned: the next step, or the steady state after completing.
 * Leaving the first for anything outside the second (deciding, halted, fenced, stopped ...) abandons it.
 */
const UNDER_WAY = {
  primary: (s: string) => s.startsWith('protected.checkpointing.') || s.startsWith('syncing.'),
  secondary: (s: string) => /^(synchronised\.(suspending|receiving|applying)|syncing\.(receiving|applying))$/.test(s),
};
const GOES_ON = {
  primary: (s: string) => s.startsWith('protected.') || s.startsWith('syncing.'),
  secondary: (s: string) => s.startsWith('synchronised.') || s.startsWith('syncing.'),
};

/** The cause when transition `t` abandons a checkpoint under way, null when it does not. */
export function checkpointAbort(t: Transition): AbortCause | null {
  if (!UNDER_WAY[t.role](t.from) || GOES_ON[t.role](t.to)) return null;
  if (t.event === TIMER_EVENT) return 'timeout';
  if (t.event === 'SECONDARY_LOST' || t.event === 'PRIMARY_LOST') return 'peer_lost';
  // Stopped, an operator's failover, a higher epoch met, the guest gone: the node itself stopped checkpointing.
  if (t.event === 'STOP' || t.event === 'FAILOVER' || t.event === 'HIGHER_EPOCH_SEEN' || t.event === 'GUEST_LOST') return 'stopped';
  // A report out of place, or a stream that did not decode.
  return 'protocol';
}
