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

/** The state name of a role's machine, 'not-started' before the machine exists. */
export function stateOf(actor: { getSnapshot(): { value: unknown } } | undefined): string {
  return actor ? stateName(actor.getSnapshot().value) : 'not-started';
}

/** The event a transition reports when xstate's own scheduler caused it (an `after` delay ran out). */
export const TIMER_EVENT = 'xstate.after';

/** The event the first report (the machine's initial state) carries. */
export const INIT_EVENT = 'xstate.init';

/** The part of an xstate actor the observer needs. */
export interface ObservableActor<E extends { type: string }> {
  send(event: E): void;
  subscribe(next: (snapshot: { value?: unknown }) => void): unknown;
}

/**
 * Reports every change of an actor's state value (re-entries of the same state, like the stall timer's restart
 * on each record, are not transitions anyone needs to see), with the event that caused it. Call before
 * `actor.start()`, so the initial state is reported too.
 *
 * Why not xstate's `inspect` option, the obvious tool: with any inspection observer attached, xstate sends ~34
 * inspection events per checkpoint, each built as `{ ...event, rootId }`, and on Node 20's V8 an object literal
 * that spreads one object and adds a property, at a call site that sees one to four shapes, makes the young
 * objects it touches survive collections: measured in a loop of the primary machine alone, 6 % of everything
 * allocated survived each scavenge (0.1 % without the observer), scavenges took 2.4 ms instead of 0.4, and
 * each checkpoint cycle took 147 us instead of 84. In a pair, removing it took the primary's scavenges from 1.7
 * to 1.0 ms and the secondary's from 2.3-3.3 to 1.6 ms (docs/performance.md, eleventh round). So the node
 * watches snapshots (one per macrostep) and learns the cause from its own `send`, which it wraps: every event
 * from outside the machine arrives through it; what arrives otherwise is xstate's scheduler firing an `after`.
 */
export function observeTransitions<E extends { type: string }>(
  actor: ObservableActor<E>,
  role: NodeRole,
  epochOf: () => number,
  report: (t: Transition) => void,
): void {
  let cause: string | undefined;
  const send = actor.send.bind(actor);
  actor.send = (event: E) => {
    const outer = cause;
    cause = event.type;
    try {
      send(event);
    } finally {
      cause = outer;
    }
  };
  let last: string | undefined;
  actor.subscribe((snapshot) => {
    if (snapshot.value === undefined) return;
    const to = stateName(snapshot.value);
    if (to === last) return;
    const event = last === undefined ? INIT_EVENT : (cause ?? TIMER_EVENT);
    const from = last ?? '(start)';
    last = to;
    report({ from, to, event, role, epoch: epochOf() });
  });
}
