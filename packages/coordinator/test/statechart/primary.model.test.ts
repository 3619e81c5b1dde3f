import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, type SnapshotFrom } from 'xstate';
import { getSimplePaths } from 'xstate/graph';
import {
  bindPrimaryEffects,
  CoordinatorErrorCode,
  primaryMachine,
  type PrimaryEffects,
  type PrimaryEvent,
  type ReplicationMode,
} from '../internals.js';
import { decisionLost, delayOf, guestLost, linkClosed, ownEventTypes, stateKey, TIMINGS } from './model.js';

/**
 * Model-based test of the primary's statechart: every simple path of the real machine (both modes) is driven on
 * a real actor with a simulated clock, and the effects it asks for are checked against the handshake rules of
 * colo-protocol.md at every step, by a small model of the guest and the link that only sees the effects; and the
 * arbiter's rule (docs/architecture.md): a primary that loses its secondary asks for the next epoch and holds
 * unbacked output until it wins it (continueAlone), or steps down on losing it.
 */
type Snap = SnapshotFrom<typeof primaryMachine>;

const BACK_CHANNEL = ['SECONDARY_SUSPENDED', 'SECONDARY_DIRTY', 'SECONDARY_READY', 'SECONDARY_RESUMED', 'CHECKPOINT_ACK'];

function eventsFor(snapshot: Snap): PrimaryEvent[] {
  if (snapshot.status !== 'active') return [];
  return ownEventTypes(snapshot).flatMap((type): PrimaryEvent[] => {
    switch (type) {
      case 'SECONDARY_CONNECTED':
        return [
          { type, peer: 'secondary-a', ack: true },
          { type, peer: 'secondary-b', ack: false },
        ];
      case 'SECONDARY_DIRTY':
        return [{ type, pfns: [3, 7] }];
      case 'CHECKPOINT_ACK':
        // The right sequence number, and a wrong one.
        return [
          { type, seq: snapshot.context.linkIndex },
          { type, seq: snapshot.context.linkIndex + 5 },
        ];
      case 'CHECKPOINT_REQUESTED':
        return [{ type, reason: 'manual' }];
      case 'SECONDARY_LOST':
        return [{ type, error: linkClosed }];
      case 'HIGHER_EPOCH_SEEN':
        return [{ type, epoch: snapshot.context.epoch + 1 }];
      case 'DECISION_WON':
        return [{ type, epoch: snapshot.context.epoch + 1 }];
      case 'DECISION_LOST':
        return [{ type, error: decisionLost }];
      case 'GUEST_LOST':
        return [{ type, error: guestLost }];
      default:
        return [{ type } as PrimaryEvent];
    }
  });
}

interface Effect {
  name: keyof PrimaryEffects;
  arg?: unknown;
}

/** What the effects did to the world: the guest's run state, the link, completed checkpoints. */
class World {
  guest: 'running' | 'suspended' | 'stopped' = 'running';
  attached = false;
  completed: { seq: number; reason: string }[] = [];
  log: Effect[] = [];
  protectedSince = 0;
  /** Output the secondary did not back may leave: false from losing it until the arbiter's win. */
  mayReleaseAlone = true;
  decisions = 0;
  effects(): PrimaryEffects {
    const rec = (name: keyof PrimaryEffects, arg?: unknown) => this.log.push({ name, arg });
    return {
      startLiveMigration: () => rec('startLiveMigration'),
      sendNewCheckpoint: () => rec('sendNewCheckpoint'),
      suspendAndSendCheckpoint: (_c, dirty) => {
        rec('suspendAndSendCheckpoint', [...dirty]);
        this.guest = 'suspended';
      },
      resumeGuest: () => {
        rec('resumeGuest');
        this.guest = 'running';
      },
      checkpointCompleted: (_c, cp) => {
        rec('checkpointCompleted', cp);
        this.completed.push({ ...cp });
      },
      protectionStarted: () => {
        rec('protectionStarted');
        this.protectedSince++;
      },
      dropSecondary: (_c, error) => {
        rec('dropSecondary', error);
        // The runtime resumes a suspended guest when it drops the secondary.
        if (this.guest === 'suspended') this.guest = 'running';
        this.attached = false;
        if (error.code !== CoordinatorErrorCode.STOPPED) this.mayReleaseAlone = false;
      },
      decide: () => {
        rec('decide');
        this.decisions++;
      },
      continueAlone: () => {
        rec('continueAlone');
        this.mayReleaseAlone = true;
      },
      refuseRequest: (_c, reason) => rec('refuseRequest', reason),
      stepDown: (_c, error) => {
        rec('stepDown', error);
        this.guest = 'stopped';
        this.attached = false;
      },
    };
  }
}

/** The guest must be running in these states (the pause is only between suspend-and-send and resume). */
const GUEST_RUNNING = [
  'unprotected',
  'deciding',
  'syncing.precopy',
  'syncing.awaitingResumed',
  'syncing.awaitingAck',
  'protected.idle',
  'protected.checkpointing.awaitingSuspended',
  'protected.checkpointing.awaitingDirtyList',
  'protected.checkpointing.awaitingResumed',
  'protected.checkpointing.awaitingAck',
];
const GUEST_SUSPENDED = ['syncing.stopAndCopy', 'syncing.awaitingReady', 'protected.checkpointing.transferring', 'protected.checkpointing.awaitingReady'];

function pathsFor(mode: ReplicationMode) {
  return getSimplePaths(primaryMachine, {
    input: { nodeId: 'p1', mode, epoch: 4, timings: TIMINGS },
    events: eventsFor,
    serializeState: (s) => JSON.stringify({ v: s.value, ack: s.context.ackEnabled, pending: s.context.pending.length > 0 }),
  });
}

describe.each(['colo', 'remus'] as const)('primary statechart, %s mode, every simple path', (mode) => {
  const paths = pathsFor(mode);

  it('has paths reaching every state of the machine', () => {
    const reached = new Set(paths.map((p) => stateKey(p.state.value)));
    const expected =
      mode === 'colo'
        ? ['syncing.awaitingReady', 'syncing.awaitingResumed', 'protected.checkpointing.awaitingSuspended', 'protected.checkpointing.awaitingDirtyList', 'protected.checkpointing.awaitingResumed']
        : ['syncing.awaitingAck', 'protected.checkpointing.awaitingAck'];
    for (const s of ['unprotected', 'deciding', 'syncing.precopy', 'syncing.stopAndCopy', 'protected.idle', 'protected.checkpointing.transferring', 'fenced', 'demoted', 'stopped', ...expected]) {
      expect(reached, s).toContain(s);
    }
  });

  it('drives a real actor along each path; the effects follow the handshake at every step', () => {
    for (const path of paths) {
      const clock = new SimulatedClock();
      const world = new World();
      const actor = createActor(bindPrimaryEffects(world.effects()), {
        input: { nodeId: 'p1', mode, epoch: 4, timings: TIMINGS },
        clock,
      }).start();
      let lastCompleted = 0;
      for (const step of path.steps.slice(1)) {
        const before = actor.getSnapshot();
        const from = stateKey(before.value);
        const mark = world.log.length;
        const event = step.event as PrimaryEvent;
        if (event.type.startsWith('xstate.after.')) {
          const d = delayOf(event.type);
          clock.increment(d >= 0 ? d : mode === 'remus' ? TIMINGS.remusIntervalMs : TIMINGS.maxIntervalMs);
        } else {
          actor.send(event);
        }
        const after = actor.getSnapshot();
        const to = stateKey(after.value);
        const effects = world.log.slice(mark);
        const names = effects.map((e) => e.name);
        const where = `${path.steps.map((s) => s.event.type).join(' > ')} [at ${from} --${event.type}--> ${to}]`;

        // The real actor is where the model says it is.
        expect(to, where).toBe(stateKey(step.state.value));

        // Guest run state matches the handshake step.
        if (GUEST_RUNNING.includes(to)) expect(world.guest, where).toBe('running');
        if (GUEST_SUSPENDED.includes(to)) expect(world.guest, where).toBe('suspended');
        if (to === 'fenced' || to === 'demoted') {
          expect(names.at(-1), where).toBe('stepDown');
          const code = (effects.at(-1)!.arg as { code: string }).code;
          const expected = { DECISION_LOST: CoordinatorErrorCode.DECISION_LOST, GUEST_LOST: CoordinatorErrorCode.GUEST_LOST }[event.type as string];
          expect(code, where).toBe(expected ?? CoordinatorErrorCode.FENCED);
        }

        // Failures drop the secondary with the right typed error, then ask the arbiter: nothing else.
        if (to === 'deciding' && from !== 'deciding') {
          expect(names, where).toEqual(['dropSecondary', 'decide']);
          expect(world.attached, where).toBe(false);
        }
        if (event.type.startsWith('xstate.after.phaseTimeout')) {
          expect(to, where).toBe('deciding');
          expect((effects.find((e) => e.name === 'dropSecondary')!.arg as { code: string }).code, where).toBe(CoordinatorErrorCode.PHASE_TIMEOUT);
        }
        if (event.type === 'SECONDARY_LOST' && from !== 'unprotected' && from !== 'deciding') {
          expect(to, where).toBe('deciding');
          expect(effects.find((e) => e.name === 'dropSecondary')?.arg, where).toBe(linkClosed);
        }
        if (BACK_CHANNEL.includes(event.type) && to === 'deciding' && from !== 'deciding') {
          expect((effects.find((e) => e.name === 'dropSecondary')!.arg as { code: string }).code, where).toBe(CoordinatorErrorCode.MISPLACED_RECORD);
        }
        if ((from === 'unprotected' || from === 'deciding') && event.type === 'CHECKPOINT_REQUESTED') expect(names, where).toEqual(['refuseRequest']);
        // Only the arbiter's answer ends a decision: a win continues unprotected at the won epoch, a loss steps down.
        if (from === 'deciding' && to !== 'deciding') {
          expect(['DECISION_WON', 'DECISION_LOST', 'HIGHER_EPOCH_SEEN', 'GUEST_LOST', 'FAILOVER', 'STOP'], where).toContain(event.type);
        }
        // A primary whose guest is gone never asks to go on alone: it steps down, whatever it was doing.
        if (event.type === 'GUEST_LOST') {
          expect(to, where).toBe('fenced');
          expect(names, where).not.toContain('decide');
        }
        if (event.type === 'DECISION_WON') {
          expect(names, where).toEqual(['continueAlone']);
          expect(to, where).toBe('unprotected');
          expect(after.context.epoch, where).toBe(before.context.epoch + 1);
        }
        if (names.includes('continueAlone')) expect(from, where).toBe('deciding');
        // Unbacked output never leaves while deciding; a secondary never attaches before the answer.
        if (to === 'deciding') expect(world.mayReleaseAlone, where).toBe(false);
        if (to === 'unprotected') expect(world.mayReleaseAlone, where).toBe(true);
        expect(world.decisions, where).toBeLessThanOrEqual(1);

        // COLO: the primary suspends only after the secondary's dirty list, and sends the union of both.
        if (names.includes('suspendAndSendCheckpoint') && from.startsWith('protected')) {
          const arg = effects.find((e) => e.name === 'suspendAndSendCheckpoint')!.arg;
          if (mode === 'colo') {
            expect(event.type, where).toBe('SECONDARY_DIRTY');
            expect(arg, where).toEqual([3, 7]);
          } else expect(arg, where).toEqual([]);
        }
        if (names.includes('sendNewCheckpoint')) expect(mode, where).toBe('colo');

        // A checkpoint completes only on the step that finishes it: READY->RESUMED (COLO), matching ACK, or send.
        if (names.includes('checkpointCompleted')) {
          if (mode === 'colo') expect(event.type, where).toBe('SECONDARY_RESUMED');
          else if (before.context.ackEnabled) {
            expect(event.type, where).toBe('CHECKPOINT_ACK');
            expect((event as { seq: number }).seq, where).toBe(before.context.linkIndex);
          } else expect(event.type, where).toBe('CHECKPOINT_SENT');
        }
        expect(world.completed.length - lastCompleted, where).toBeLessThanOrEqual(1);
        lastCompleted = world.completed.length;
      }
      // Completed checkpoints are numbered in order; the first on a link is the initial synchronisation.
      const seqs = world.completed.map((c) => c.seq);
      expect(seqs, path.steps.map((s) => s.event.type).join(' > ')).toEqual([...seqs].sort((a, b) => a - b));
      if (world.completed.length > 0) expect(world.completed[0]!.reason).toBe('initial');
      actor.stop();
    }
  });
});

describe('primary statechart: coalescing and periodic checkpoints', () => {
  it('requests during a checkpoint coalesce into exactly one next checkpoint', () => {
    const clock = new SimulatedClock();
    const world = new World();
    const actor = createActor(bindPrimaryEffects(world.effects()), { input: { nodeId: 'p', mode: 'colo', epoch: 1, timings: TIMINGS }, clock }).start();
    const send = (e: PrimaryEvent) => actor.send(e);
    send({ type: 'SECONDARY_CONNECTED', peer: 's', ack: true });
    send({ type: 'PRECOPY_DONE' });
    send({ type: 'CHECKPOINT_SENT' });
    send({ type: 'SECONDARY_READY' });
    send({ type: 'SECONDARY_RESUMED' });
    send({ type: 'CHECKPOINT_REQUESTED', reason: 'miscompare' });
    expect(stateKey(actor.getSnapshot().value)).toBe('protected.checkpointing.awaitingSuspended');
    send({ type: 'CHECKPOINT_REQUESTED', reason: 'stale' });
    send({ type: 'CHECKPOINT_REQUESTED', reason: 'manual' });
    for (const e of ['SECONDARY_SUSPENDED', 'SECONDARY_DIRTY', 'CHECKPOINT_SENT', 'SECONDARY_READY', 'SECONDARY_RESUMED'] as const) {
      send(e === 'SECONDARY_DIRTY' ? { type: e, pfns: [] } : ({ type: e } as PrimaryEvent));
    }
    // The two coalesced requests started one more checkpoint (reason of the first), not two.
    expect(stateKey(actor.getSnapshot().value)).toBe('protected.checkpointing.awaitingSuspended');
    for (const e of ['SECONDARY_SUSPENDED', 'SECONDARY_DIRTY', 'CHECKPOINT_SENT', 'SECONDARY_READY', 'SECONDARY_RESUMED'] as const) {
      send(e === 'SECONDARY_DIRTY' ? { type: e, pfns: [] } : ({ type: e } as PrimaryEvent));
    }
    expect(stateKey(actor.getSnapshot().value)).toBe('protected.idle');
    expect(world.completed.map((c) => c.reason)).toEqual(['initial', 'miscompare', 'stale']);
    expect(world.completed.map((c) => c.seq)).toEqual([1, 2, 3]);
    // The COLO maximum interval fires 'periodic' when nothing else asked.
    clock.increment(TIMINGS.maxIntervalMs - 1);
    expect(stateKey(actor.getSnapshot().value)).toBe('protected.idle');
    clock.increment(1);
    expect(stateKey(actor.getSnapshot().value)).toBe('protected.checkpointing.awaitingSuspended');
    expect(actor.getSnapshot().context.current).toEqual({ seq: 4, reason: 'periodic' });
    actor.stop();
  });

  it('Remus takes a checkpoint every interval and holds completion until the matching ACK', () => {
    const clock = new SimulatedClock();
    const world = new World();
    const actor = createActor(bindPrimaryEffects(world.effects()), { input: { nodeId: 'p', mode: 'remus', epoch: 1, timings: TIMINGS }, clock }).start();
    actor.send({ type: 'SECONDARY_CONNECTED', peer: 's', ack: true });
    actor.send({ type: 'PRECOPY_DONE' });
    actor.send({ type: 'CHECKPOINT_SENT' });
    expect(world.guest).toBe('running');
    actor.send({ type: 'CHECKPOINT_ACK', seq: 0 });
    expect(stateKey(actor.getSnapshot().value)).toBe('protected.idle');
    for (let i = 1; i <= 3; i++) {
      clock.increment(TIMINGS.remusIntervalMs);
      expect(stateKey(actor.getSnapshot().value)).toBe('protected.checkpointing.transferring');
      expect(world.guest).toBe('suspended');
      actor.send({ type: 'CHECKPOINT_SENT' });
      expect(world.completed.length).toBe(i);
      actor.send({ type: 'CHECKPOINT_ACK', seq: i });
      expect(world.completed.length).toBe(i + 1);
    }
    expect(world.completed.map((c) => c.reason)).toEqual(['initial', 'periodic', 'periodic', 'periodic']);
    actor.stop();
  });
});
