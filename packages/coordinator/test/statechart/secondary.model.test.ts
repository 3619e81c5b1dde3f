import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, type SnapshotFrom } from 'xstate';
import { getSimplePaths } from 'xstate/graph';
import {
  bindSecondaryEffects,
  CoordinatorErrorCode,
  secondaryMachine,
  type SecondaryEffects,
  type SecondaryEvent,
} from '../internals.js';
import { decisionLost, delayOf, linkClosed, ownEventTypes, stateKey, TIMINGS } from './model.js';

/**
 * Model-based test of the secondary's statechart: every simple path, both modes, on a real actor. A small model
 * of the guest (run state, applied checkpoints, pending buffer) sees only the effects and checks the rules of
 * colo-protocol.md: apply only on CHECKPOINT_END, never take over before a first checkpoint, discard before
 * promoting, Remus guest never runs before failover; and the arbiter's rule (docs/architecture.md): a secondary
 * that loses its primary asks for the next epoch and promotes only on winning it, stands down on losing it.
 */
type Snap = SnapshotFrom<typeof secondaryMachine>;

function eventsFor(snapshot: Snap): SecondaryEvent[] {
  if (snapshot.status !== 'active') return [];
  return ownEventTypes(snapshot).map((type): SecondaryEvent => {
    switch (type) {
      case 'CONNECTED':
        return { type, peer: 'primary', epoch: 7, ack: true };
      case 'PRIMARY_LOST':
        return { type, error: linkClosed };
      case 'DECISION_WON':
        return { type, epoch: snapshot.context.epoch + 1 };
      case 'DECISION_LOST':
        return { type, error: decisionLost };
      default:
        return { type } as SecondaryEvent;
    }
  });
}

class World {
  guest: 'not-started' | 'running' | 'suspended' = 'not-started';
  applied = 0;
  discarded = 0;
  acks = 0;
  log: { name: keyof SecondaryEffects; arg?: unknown }[] = [];
  outcome: { kind: 'promoted' | 'halted' | 'refused' | 'stood-down'; code: string; epoch: number } | undefined;
  /** Why the primary was abandoned (the error given to abandonPrimary). */
  abandoned: { code: string } | undefined;
  decisions = 0;
  effects(): SecondaryEffects {
    const rec = (name: keyof SecondaryEffects, arg?: unknown) => this.log.push({ name, arg });
    return {
      suspendAndReportDirty: () => {
        rec('suspendAndReportDirty');
        this.guest = 'suspended';
      },
      applyCheckpoint: () => {
        rec('applyCheckpoint');
        this.applied++;
      },
      readyAndResume: () => {
        rec('readyAndResume');
        this.guest = 'running';
      },
      acknowledge: (ctx) => {
        rec('acknowledge', ctx.applied);
        this.acks++;
      },
      discardCheckpoint: () => {
        rec('discardCheckpoint');
        this.discarded++;
      },
      abandonPrimary: (_ctx, error) => {
        rec('abandonPrimary', error);
        this.abandoned = error;
      },
      decide: () => {
        rec('decide');
        this.decisions++;
      },
      promote: (ctx) => {
        rec('promote');
        this.guest = 'running';
        this.outcome = { kind: 'promoted', code: this.abandoned!.code, epoch: ctx.epoch };
      },
      standDown: (ctx, error) => {
        rec('standDown', error);
        this.outcome = { kind: 'stood-down', code: error.code, epoch: ctx.epoch };
      },
      halt: (ctx, error) => {
        rec('halt', error);
        this.outcome = { kind: 'halted', code: error.code, epoch: ctx.epoch };
      },
      refuseFailover: (ctx, error) => {
        rec('refuseFailover', error);
        this.outcome = { kind: 'refused', code: error.code, epoch: ctx.epoch };
      },
    };
  }
}

describe.each(['colo', 'remus'] as const)('secondary statechart, %s mode, every simple path', (mode) => {
  const paths = getSimplePaths(secondaryMachine, {
    input: { nodeId: 's1', mode, epoch: 3, timings: TIMINGS },
    events: eventsFor,
    serializeState: (s) => JSON.stringify(s.value),
  });

  it('reaches every state of its mode', () => {
    const reached = new Set(paths.map((p) => stateKey(p.state.value)));
    const modeStates = mode === 'colo' ? ['synchronised.running', 'synchronised.suspending'] : ['synchronised.standby'];
    for (const s of ['syncing.connecting', 'syncing.receiving', 'syncing.applying', 'synchronised.receiving', 'synchronised.applying', 'deciding', 'promoted', 'fenced', 'halted', 'stopped', ...modeStates]) {
      expect(reached, s).toContain(s);
    }
  });

  it('drives a real actor along each path; the effects follow the rules at every step', () => {
    expect(paths.length).toBeGreaterThan(20);
    for (const path of paths) {
      const clock = new SimulatedClock();
      const world = new World();
      const actor = createActor(bindSecondaryEffects(world.effects()), {
        input: { nodeId: 's1', mode, epoch: 3, timings: TIMINGS },
        clock,
      }).start();
      let everSynchronised = false;
      for (const step of path.steps.slice(1)) {
        const before = actor.getSnapshot();
        const from = stateKey(before.value);
        const mark = world.log.length;
        const event = step.event as SecondaryEvent;
        if (event.type.startsWith('xstate.after.')) clock.increment(delayOf(event.type));
        else actor.send(event);
        const after = actor.getSnapshot();
        const to = stateKey(after.value);
        const names = world.log.slice(mark).map((e) => e.name);
        const where = `${path.steps.map((s) => s.event.type).join(' > ')} [at ${from} --${event.type}--> ${to}]`;
        expect(to, where).toBe(stateKey(step.state.value));

        // Atomic apply: the guest changes only on the step that received CHECKPOINT_END.
        if (names.includes('applyCheckpoint')) expect(event.type, where).toBe('CHECKPOINT_RECEIVED');
        if (to.startsWith('synchronised')) everSynchronised = true;

        // No promotion without the arbiter: promote() only on the step that won the next epoch.
        if (names.includes('promote')) {
          expect(event.type, where).toBe('DECISION_WON');
          expect(from, where).toBe('deciding');
        }
        if (to === 'deciding' && from !== 'deciding') {
          // Never before a first complete checkpoint; the half-received one is discarded, then the arbiter asked.
          expect(everSynchronised, where).toBe(true);
          expect(names, where).toEqual(['discardCheckpoint', 'abandonPrimary', 'decide']);
          if (event.type === 'PRIMARY_LOST') expect(world.abandoned!.code, where).toBe(linkClosed.code);
          if (event.type === 'FAILOVER') expect(world.abandoned!.code, where).toBe(CoordinatorErrorCode.PEER_LOST);
          if (event.type.startsWith('xstate.after')) expect(world.abandoned!.code, where).toBe(CoordinatorErrorCode.PHASE_TIMEOUT);
          if (['NEW_CHECKPOINT', 'STREAM_PROGRESS', 'CHECKPOINT_RECEIVED'].includes(event.type)) {
            expect(world.abandoned!.code, where).toBe(CoordinatorErrorCode.MISPLACED_RECORD);
          }
        }
        // Waiting for the arbiter, whatever arrives, nothing else happens (a second FAILOVER included).
        if (from === 'deciding' && to === 'deciding') expect(names, where).toEqual([]);
        if (to === 'promoted') {
          expect(names, where).toEqual(['promote']);
          expect(world.outcome!.epoch, where).toBe((event as { epoch: number }).epoch);
          expect(world.outcome!.epoch, where).toBe(before.context.epoch + 1);
          expect(world.guest, where).toBe('running');
        }
        if (to === 'fenced') {
          // The primary kept the epoch: this replica is discarded and the node leaves, never serving.
          expect(event.type, where).toBe('DECISION_LOST');
          expect(names, where).toEqual(['discardCheckpoint', 'standDown']);
          expect(world.outcome, where).toEqual({ kind: 'stood-down', code: CoordinatorErrorCode.DECISION_LOST, epoch: before.context.epoch });
        }
        expect(world.decisions, where).toBeLessThanOrEqual(1);
        if (to === 'halted') {
          expect(everSynchronised, where).toBe(false);
          expect(names, where).toContain('discardCheckpoint');
          if (event.type === 'PRIMARY_LOST') expect(world.outcome!.code, where).toBe(CoordinatorErrorCode.NOT_SYNCHRONISED);
          if (event.type.startsWith('xstate.after')) expect(world.outcome!.code, where).toBe(CoordinatorErrorCode.PHASE_TIMEOUT);
        }
        if (event.type === 'FAILOVER' && !everSynchronised) {
          expect(names, where).toEqual(['refuseFailover']);
          expect(world.outcome!.code, where).toBe(CoordinatorErrorCode.NOT_SYNCHRONISED);
        }
        if (mode === 'remus') {
          // Passive: the guest never runs before failover; each applied checkpoint is acknowledged with its number.
          expect(names, where).not.toContain('readyAndResume');
          expect(names, where).not.toContain('suspendAndReportDirty');
          if (to !== 'promoted') expect(world.guest, where).toBe('not-started');
          if (names.includes('applyCheckpoint')) expect(to, where).toMatch(/\.applying$/);
          if (event.type === 'CHECKPOINT_APPLIED') {
            expect(names, where).toEqual(['acknowledge']);
            expect(world.log.at(-1)!.arg, where).toBe(world.acks - 1);
          }
        } else {
          if (to === 'synchronised.running') expect(world.guest, where).toBe('running');
          if (to === 'synchronised.receiving' || to === 'synchronised.applying') expect(world.guest, where).toBe('suspended');
          expect(names, where).not.toContain('acknowledge');
        }
      }
      actor.stop();
    }
  });
});

describe('secondary statechart: stall timer', () => {
  it('restarts on every complete record and fires only after a full stall', () => {
    const clock = new SimulatedClock();
    const world = new World();
    const actor = createActor(bindSecondaryEffects(world.effects()), { input: { nodeId: 's', mode: 'remus', epoch: 0, timings: TIMINGS }, clock }).start();
    actor.send({ type: 'CONNECTED', peer: 'p', epoch: 0, ack: true });
    for (let i = 0; i < 10; i++) {
      clock.increment(TIMINGS.stallTimeoutMs - 1);
      actor.send({ type: 'STREAM_PROGRESS' });
    }
    expect(stateKey(actor.getSnapshot().value)).toBe('syncing.receiving');
    clock.increment(TIMINGS.stallTimeoutMs);
    expect(stateKey(actor.getSnapshot().value)).toBe('halted');
    expect(world.outcome).toEqual({ kind: 'halted', code: CoordinatorErrorCode.PHASE_TIMEOUT, epoch: 0 });
    actor.stop();
  });
});
