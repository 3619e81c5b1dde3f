import type { InspectionEvent } from 'xstate';
import type { NodeRole } from '../statechart/types.js';

/** One state change of a node's statechart: the single place logs, metrics and status hear about transitions. */
export interface Transition {
  from: string;
  to: string;
  /** The event type that caused it. */
  event: string;
  role: NodeRole;
  epoch: number;
}

/** Dotted path of a state value: { protected: { checkpointing: 'awaitingReady' } } -> protected.checkpointing.awaitingReady. */
export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    // Runs for every snapshot of every checkpoint: the first key without an array of entries per level (the
    // machines have no parallel states, so a level has one active child).
    for (const k in value) {
      const rest = stateName((value as Record<string, unknown>)[k]);
      return rest ? `${k}.${rest}` : k;
    }
    return '?';
  }
  return String(value);
}

/**
 * Builds an xstate `inspect` callback that reports every change of state value (re-entries of the same state,
 * like the stall timer's restart on each record, are not transitions anyone needs to see).
 */
export function transitionInspector(
  role: NodeRole,
  epochOf: () => number,
  report: (t: Transition) => void,
): (ev: InspectionEvent) => void {
  let last: string | undefined;
  return (ev) => {
    if (ev.type !== '@xstate.snapshot' || ev.actorRef.sessionId !== ev.rootId) return;
    const snap = ev.snapshot as { value?: unknown };
    if (snap.value === undefined) return;
    const to = stateName(snap.value);
    if (to === last) return;
    const from = last ?? '(start)';
    last = to;
    report({ from, to, event: ev.event.type, role, epoch: epochOf() });
  };
}
