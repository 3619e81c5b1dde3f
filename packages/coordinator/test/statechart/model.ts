import { getStateNodes, type AnyMachineSnapshot, type AnyStateNode } from 'xstate';
import { CoordinatorError, CoordinatorErrorCode } from '../internals.js';

/** Event descriptors the machine itself accepts in this snapshot (so no event is ever forgotten by the test). */
export function ownEventTypes(snapshot: AnyMachineSnapshot): string[] {
  // The active state nodes and every ancestor of theirs (an event a parent state handles is accepted too).
  const nodes = new Set<AnyStateNode>();
  for (let n of getStateNodes(snapshot.machine.root, snapshot.value) as AnyStateNode[]) {
    for (let at: AnyStateNode | undefined = n; at && !nodes.has(at); at = at.parent) nodes.add(at);
  }
  // done.state events are raised by the machine itself when a compound state finishes: never sent from outside.
  return [...new Set([...nodes].flatMap((n) => n.ownEvents))].filter((t) => !t.startsWith('xstate.done.'));
}

export const linkClosed = new CoordinatorError(CoordinatorErrorCode.PEER_LOST, 'link closed by peer (test)');
export const decisionLost = new CoordinatorError(CoordinatorErrorCode.DECISION_LOST, 'the other node won the epoch (test)');
export const guestLost = new CoordinatorError(CoordinatorErrorCode.GUEST_LOST, 'the guest\'s hypervisor process ended (test)');

/** Test timings: all different, so advancing the clock by one of them fires exactly the intended timer. */
export const TIMINGS = { phaseTimeoutMs: 1_000, stallTimeoutMs: 1_500, remusIntervalMs: 200, maxIntervalMs: 3_000 };

export function delayOf(eventType: string): number {
  // xstate.after.<delayName>.<state id>
  const name = eventType.split('.')[2];
  switch (name) {
    case 'phaseTimeout':
      return TIMINGS.phaseTimeoutMs;
    case 'stallTimeout':
      return TIMINGS.stallTimeoutMs;
    case 'checkpointInterval':
      return -1; // mode-dependent: resolved by the caller
    default:
      throw new Error(`unknown delay in ${eventType}`);
  }
}

export function stateKey(value: unknown): string {
  if (typeof value === 'string') return value;
  const [k, v] = Object.entries(value as Record<string, unknown>)[0]!;
  return `${k}.${stateKey(v)}`;
}
