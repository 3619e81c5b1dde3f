import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock } from 'xstate';
import { INIT_EVENT, observeTransitions, stateName, TIMER_EVENT, type Transition } from '../../src/node/transitions.js';
import { bindPrimaryEffects } from '../../src/statechart/bind.js';
import type { PrimaryEffects } from '../../src/statechart/primary.js';
import { DEFAULT_TIMINGS } from '../../src/statechart/types.js';

/** The straightforward definition stateName must agree with (it was the implementation before it was made cheaper). */
function reference(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [k, v] = Object.entries(value)[0] ?? ['?', ''];
    const rest = reference(v);
    return rest ? `${k}.${rest}` : k;
  }
  return String(value);
}

describe('stateName', () => {
  it('names the states of real machine values', () => {
    expect(stateName('unprotected')).toBe('unprotected');
    expect(stateName({ protected: 'idle' })).toBe('protected.idle');
    expect(stateName({ protected: { checkpointing: 'awaitingReady' } })).toBe('protected.checkpointing.awaitingReady');
  });

  it('agrees with the reference on any value, odd ones included (empty objects, empty strings, numbers, null)', () => {
    const leaf = fc.oneof(fc.string({ maxLength: 4 }), fc.constant(''), fc.integer(), fc.constant(null), fc.constant(undefined));
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.dictionary(fc.string({ maxLength: 3 }), tie('v'), { maxKeys: 3 })),
    })).v;
    fc.assert(fc.property(value, (v) => stateName(v) === reference(v)), { numRuns: 2000 });
  });
});

describe('observeTransitions', () => {
  /** A real primary machine with effects that do nothing, on a simulated clock, observed from its start. */
  function observedPrimary() {
    const effects = new Proxy({}, { get: () => () => {} }) as PrimaryEffects;
    const clock = new SimulatedClock();
    const actor = createActor(bindPrimaryEffects(effects), { input: { nodeId: 'p', mode: 'colo', epoch: 3 }, clock });
    const seen: Transition[] = [];
    let epoch = 3;
    observeTransitions(actor, 'primary', () => epoch, (t) => seen.push(t));
    actor.start();
    return { actor, clock, seen, setEpoch: (e: number) => (epoch = e) };
  }
  const steps = (seen: Transition[]) => seen.map((t) => `${t.from} -> ${t.to} on ${t.event}`);

  it('reports the initial state, then each change of state with the event sent that caused it', () => {
    const { actor, seen } = observedPrimary();
    actor.send({ type: 'SECONDARY_CONNECTED', peer: 's', ack: false });
    actor.send({ type: 'PRECOPY_DONE' });
    actor.send({ type: 'CHECKPOINT_SENT' });
    actor.send({ type: 'SECONDARY_READY' });
    actor.send({ type: 'SECONDARY_RESUMED' });
    // A COLO checkpoint: the `always` step out of `starting` is part of CHECKPOINT_REQUESTED's step.
    actor.send({ type: 'CHECKPOINT_REQUESTED', reason: 'manual' });
    actor.send({ type: 'SECONDARY_SUSPENDED' });
    expect(steps(seen)).toEqual([
      `(start) -> unprotected on ${INIT_EVENT}`,
      'unprotected -> syncing.precopy on SECONDARY_CONNECTED',
      'syncing.precopy -> syncing.stopAndCopy on PRECOPY_DONE',
      'syncing.stopAndCopy -> syncing.awaitingReady on CHECKPOINT_SENT',
      'syncing.awaitingReady -> syncing.awaitingResumed on SECONDARY_READY',
      'syncing.awaitingResumed -> protected.idle on SECONDARY_RESUMED',
      'protected.idle -> protected.checkpointing.awaitingSuspended on CHECKPOINT_REQUESTED',
      'protected.checkpointing.awaitingSuspended -> protected.checkpointing.awaitingDirtyList on SECONDARY_SUSPENDED',
    ]);
    expect(seen.every((t) => t.role === 'primary' && t.epoch === 3)).toBe(true);
    actor.stop();
  });

  it('does not report an event that leaves the state as it was', () => {
    const { actor, seen } = observedPrimary();
    // Refused while unprotected: the machine stays where it is.
    actor.send({ type: 'CHECKPOINT_REQUESTED', reason: 'manual' });
    actor.send({ type: 'CHECKPOINT_REQUESTED', reason: 'manual' });
    expect(steps(seen)).toEqual([`(start) -> unprotected on ${INIT_EVENT}`]);
    actor.stop();
  });

  it('names a transition made by a delay running out as the timer, not as the last event sent', () => {
    const { actor, clock, seen, setEpoch } = observedPrimary();
    actor.send({ type: 'SECONDARY_CONNECTED', peer: 's', ack: false });
    actor.send({ type: 'PRECOPY_DONE' });
    actor.send({ type: 'CHECKPOINT_SENT' });
    seen.length = 0;
    setEpoch(4);
    clock.increment(DEFAULT_TIMINGS.phaseTimeoutMs);
    expect(steps(seen)).toEqual([`syncing.awaitingReady -> deciding on ${TIMER_EVENT}`]);
    expect(seen[0]!.epoch).toBe(4);
    actor.stop();
  });
});
