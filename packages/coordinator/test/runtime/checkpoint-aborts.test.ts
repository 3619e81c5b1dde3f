import { describe, expect, test } from 'vitest';
import { primaryMachine, secondaryMachine } from '../internals.js';
import { checkpointAbort } from '../../src/runtime/checkpoint-aborts.js';
import { TIMER_EVENT, type Transition } from '../../src/node/transitions.js';
import type { NodeRole } from '../../src/statechart/types.js';

/** colo_checkpoint_aborts_total: which transitions of the real machines abandon a checkpoint under way, and why. */
interface StateNodeLike {
  states: Record<string, StateNodeLike>;
}
function leaves(node: StateNodeLike, prefix = ''): string[] {
  const keys = Object.keys(node.states);
  if (keys.length === 0) return [prefix];
  return keys.flatMap((k) => leaves(node.states[k]!, prefix ? `${prefix}.${k}` : k));
}
const STATES: Record<NodeRole, string[]> = {
  primary: leaves(primaryMachine.root as unknown as StateNodeLike),
  secondary: leaves(secondaryMachine.root as unknown as StateNodeLike),
};
/** The states in which a checkpoint (or the initial synchronisation) is under way, named here by hand. */
const UNDER_WAY: Record<NodeRole, (s: string) => boolean> = {
  primary: (s) => s.startsWith('protected.checkpointing.') || s.startsWith('syncing.'),
  secondary: (s) => ['syncing.receiving', 'syncing.applying', 'synchronised.suspending', 'synchronised.receiving', 'synchronised.applying'].includes(s),
};
const t = (role: NodeRole, from: string, to: string, event: string): Transition => ({ role, from, to, event, epoch: 1 });

describe('checkpoint aborts', () => {
  test.each(['primary', 'secondary'] as const)('%s: leaving a state with a checkpoint under way for deciding, halted or stopped abandons it; no other state does', (role) => {
    const states = STATES[role];
    // The machines still have the states the classifier names.
    expect(states.filter(UNDER_WAY[role]).length).toBeGreaterThanOrEqual(role === 'primary' ? 8 : 5);
    for (const to of ['deciding', 'halted', 'stopped', 'fenced']) {
      for (const from of states) expect(checkpointAbort(t(role, from, to, 'STOP')) !== null, `${from} -> ${to}`).toBe(UNDER_WAY[role](from));
    }
  });

  test.each(['primary', 'secondary'] as const)('%s: the next step of a checkpoint, or its completion, is not an abort', (role) => {
    for (const from of STATES[role].filter(UNDER_WAY[role])) {
      for (const to of STATES[role].filter((s) => s.startsWith(role === 'primary' ? 'protected.' : 'synchronised.') || s.startsWith('syncing.'))) {
        expect(checkpointAbort(t(role, from, to, 'CHECKPOINT_SENT')), `${from} -> ${to}`).toBeNull();
      }
    }
  });

  test('causes: a timer is a timeout, a lost peer peer_lost, the node\'s own end stopped, anything else protocol', () => {
    const from = 'protected.checkpointing.awaitingAck';
    expect(checkpointAbort(t('primary', from, 'deciding', TIMER_EVENT))).toBe('timeout');
    expect(checkpointAbort(t('primary', from, 'deciding', 'SECONDARY_LOST'))).toBe('peer_lost');
    expect(checkpointAbort(t('secondary', 'synchronised.receiving', 'deciding', 'PRIMARY_LOST'))).toBe('peer_lost');
    for (const e of ['STOP', 'FAILOVER', 'HIGHER_EPOCH_SEEN', 'GUEST_LOST']) expect(checkpointAbort(t('primary', from, 'fenced', e))).toBe('stopped');
    expect(checkpointAbort(t('primary', from, 'deciding', 'SECONDARY_READY'))).toBe('protocol');
    expect(checkpointAbort(t('secondary', 'synchronised.receiving', 'deciding', 'NEW_CHECKPOINT'))).toBe('protocol');
  });
});
