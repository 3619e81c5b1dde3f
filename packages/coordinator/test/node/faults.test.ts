import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { ColoNode, CoordinatorErrorCode, type ReplicationMode } from '../internals.js';
import { cutLink, stallLink } from '../../src/transport/faults.js';
import { quiet, waitFor } from './pair.js';
import { listenScripted, ScriptedPrimary } from './scripted-primary.js';

/**
 * Fault injection at every step of the handshake, against a real secondary node: a scripted primary (codec +
 * real transport) runs the protocol up to a step, then closes, crashes, hangs, stalls mid-record, corrupts the
 * stream, sends CHECKPOINT_END out of place or an unexpected control_id. colo-protocol.md decides the outcome:
 * before the first complete checkpoint the secondary stops (never takes over); after it, it takes over on its
 * last complete checkpoint. In every case its guest memory is exactly a complete checkpoint (or untouched).
 */
const PAGES = 256;
const HEARTBEAT = { intervalMs: 50, timeoutMs: 400 };
const TIMINGS = { phaseTimeoutMs: 800, stallTimeoutMs: 800, remusIntervalMs: 100, maxIntervalMs: 5000 };
const FAULTS = ['close', 'crash', 'hang', 'half-record', 'corrupt', 'misplaced-end', 'bad-control'] as const;
type Fault = (typeof FAULTS)[number];

const STEPS = {
  colo: ['headers', 'initial-pages', 'initial-before-end', 'after-first-checkpoint', 'after-new', 'mid-checkpoint', 'before-checkpoint-end'],
  remus: ['headers', 'initial-pages', 'initial-before-end', 'after-first-checkpoint', 'mid-checkpoint', 'before-checkpoint-end'],
} as const;
type Step = (typeof STEPS)['colo'][number];
const SYNCHRONISED_FROM = 3; // steps before this index happen before the first complete checkpoint

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(stops.map((s) => s().catch(() => {})));
}, 30_000);

async function runTo(p: ScriptedPrimary, mode: ReplicationMode, step: Step): Promise<void> {
  const all = Array.from({ length: PAGES }, (_, i) => i);
  await p.send(p.headers());
  if (step === 'headers') return;
  await p.send(p.pages(all.slice(0, PAGES / 2)));
  if (step === 'initial-pages') return;
  await p.send(p.pages(all.slice(PAGES / 2)));
  await p.send(p.libxcTail());
  await p.send(p.emulatorContext());
  if (step === 'initial-before-end') return;
  await p.send(ScriptedPrimary.checkpointEnd());
  if (mode === 'colo') {
    await p.expectControl(2); // READY
    await p.expectControl(3); // RESUMED
  } else {
    expect(await p.expectAck()).toBe(0);
  }
  p.mutate(1);
  if (step === 'after-first-checkpoint') return;
  if (mode === 'colo') {
    await p.send(ScriptedPrimary.control(ScriptedPrimary.NEW));
    await p.expectControl(1); // SUSPENDED
    await p.expectDirtyList();
    if (step === 'after-new') return;
  }
  await p.send(p.pages(all.slice(0, 8)));
  if (step === 'mid-checkpoint') return;
  await p.send(p.pages(all.slice(8, 40)));
  await p.send(p.libxcTail());
  await p.send(p.emulatorContext());
}

async function inject(p: ScriptedPrimary, fault: Fault): Promise<void> {
  switch (fault) {
    case 'close':
      return p.link.close('scripted close');
    case 'crash':
      return cutLink(p.link);
    case 'hang':
      stallLink(p.link);
      return;
    case 'half-record': {
      const rec = p.pages([1, 2, 3]);
      await p.send(rec.subarray(0, rec.length >> 1)); // ... and nothing more, while heartbeats go on
      return;
    }
    case 'corrupt': {
      const rec = ScriptedPrimary.control(0);
      const bad = Uint8Array.from(rec);
      bad[bad.length - 1] = 0xff; // non-zero padding
      await p.send(bad);
      return;
    }
    case 'misplaced-end':
      // Twice: whatever the step, the second CHECKPOINT_END is outside a checkpoint.
      await p.send(ScriptedPrimary.checkpointEnd());
      await p.send(ScriptedPrimary.checkpointEnd());
      return;
    case 'bad-control':
      await p.send(ScriptedPrimary.control(2)); // SVM_READY travels secondary -> primary only
      return;
  }
}

async function scenario(mode: ReplicationMode, step: Step, fault: Fault) {
  const psk = randomBytes(32);
  const { server, done } = await listenScripted({
    mode,
    psk,
    pages: PAGES,
    heartbeat: HEARTBEAT,
    script: async (p) => {
      await runTo(p, mode, step);
      await inject(p, fault);
    },
  });
  const node = new ColoNode({
    nodeId: `s-${mode}-${step}-${fault}`,
    role: 'secondary',
    mode,
    hostGuest: (id) => new SimulatedGuest({ memoryBytes: id!.pageCount * 4096, startSuspended: true }),
    replication: { peer: server.url, listen: { host: '127.0.0.1', port: 0 } },
    security: { psk },
    heartbeat: HEARTBEAT,
    checkpoint: TIMINGS,
    logger: quiet,
  });
  let lastApplied: string | undefined;
  let applyCount = 0;
  node.on('applied', (_i, d) => {
    lastApplied = (d as SimulatedGuest).memoryDigest();
    applyCount++;
  });
  stops.push(async () => {
    await node.stop();
    await server.close();
    node.domain?.destroy();
    (await done.catch(() => undefined))?.guest.destroy();
  });
  await node.start();
  await done;
  await waitFor(`${mode}/${step}/${fault} outcome`, () => ['halted', 'unprotected', 'fenced'].includes(node.status().state) && node.status().state, 6000);
  return { node, lastApplied, applyCount };
}

describe.each(['colo', 'remus'] as const)('%s secondary under a faulty primary', (mode) => {
  for (const [index, step] of STEPS[mode].entries()) {
    it(`at step '${step}': every fault has the protocol's outcome and the guest is never half-updated`, async () => {
      const results = await Promise.all(FAULTS.map((f) => scenario(mode, step, f).then((r) => ({ fault: f, ...r }))));
      for (const { fault, node, lastApplied, applyCount } of results) {
        const st = node.status();
        const where = `${mode} ${step} ${fault}: ${JSON.stringify(st.lastError)}`;
        const memory = (node.domain as SimulatedGuest | undefined)?.memoryDigest();
        if (index < SYNCHRONISED_FROM) {
          // No consistent state yet: stop, never take over, guest untouched by the partial stream.
          expect(st.role, where).toBe('secondary');
          expect(st.state, where).toBe('halted');
          expect([CoordinatorErrorCode.NOT_SYNCHRONISED, CoordinatorErrorCode.PHASE_TIMEOUT], where).toContain(st.lastError!.code);
          // A half record is a stall, found by the machine's stall timer (PHASE_TIMEOUT) or by the engine's
          // partial-record timer, whichever fires first (the machine's restarts up to an interval late when
          // progress reports are coalesced), and then named as the cause of the refusal to take over.
          if (fault === 'half-record') {
            const e = st.lastError!;
            const stall = e.code === CoordinatorErrorCode.PHASE_TIMEOUT || (e.code === CoordinatorErrorCode.NOT_SYNCHRONISED && /stalled mid-record.*COLO_PHASE_TIMEOUT/.test(e.message));
            expect(stall, `${where}: ${JSON.stringify(e)}`).toBe(true);
          }
          if (memory !== undefined) {
            // Untouched, or (when the fault came right after a whole first checkpoint: a second CHECKPOINT_END)
            // exactly that complete checkpoint; never part of one.
            const fresh = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
            expect([fresh.memoryDigest(), ...(applyCount > 0 ? [lastApplied] : [])], where).toContain(memory);
            fresh.destroy();
            if (applyCount > 0) expect({ step, fault }, where).toEqual({ step: 'initial-before-end', fault: 'misplaced-end' });
          }
        } else {
          // Take over on the last complete checkpoint: epoch raised, guest running, memory exactly that checkpoint.
          expect(st.role, where).toBe('primary');
          expect(st.state, where).toBe('unprotected');
          expect(st.epoch, where).toBe(1);
          expect(node.domain!.state, where).toBe('running');
          expect(applyCount, where).toBeGreaterThanOrEqual(1);
          expect(memory, where).toBe(lastApplied);
          const expected: Record<Fault, string[]> = {
            close: [CoordinatorErrorCode.PEER_LOST],
            crash: [CoordinatorErrorCode.PEER_LOST],
            hang: [CoordinatorErrorCode.PEER_LOST],
            'half-record': [CoordinatorErrorCode.PHASE_TIMEOUT],
            corrupt: [CoordinatorErrorCode.PEER_STREAM_ERROR],
            'misplaced-end': [CoordinatorErrorCode.PEER_STREAM_ERROR, CoordinatorErrorCode.MISPLACED_RECORD],
            'bad-control': [CoordinatorErrorCode.UNEXPECTED_CONTROL, CoordinatorErrorCode.PEER_STREAM_ERROR, CoordinatorErrorCode.MISPLACED_RECORD],
          };
          expect(expected[fault], where).toContain(st.lastError!.code);
          // At a checkpoint boundary of COLO, a wrong control_id is named as such.
          if (fault === 'bad-control' && mode === 'colo' && step === 'after-first-checkpoint') {
            expect(st.lastError!.code, where).toBe(CoordinatorErrorCode.UNEXPECTED_CONTROL);
          }
        }
      }
    });
  }
});

describe('epochs at the secondary', () => {
  it('refuses a primary whose epoch is lower than one it has seen', async () => {
    const psk = randomBytes(32);
    const { server } = await listenScripted({ mode: 'colo', psk, epoch: 2, pages: PAGES, heartbeat: HEARTBEAT, script: async () => {} });
    const node = new ColoNode({
      nodeId: 's-epoch',
      role: 'secondary',
      mode: 'colo',
      epoch: 3,
      hostGuest: (id) => new SimulatedGuest({ memoryBytes: id!.pageCount * 4096, startSuspended: true }),
      replication: { peer: server.url },
      security: { psk },
      heartbeat: HEARTBEAT,
      logger: quiet,
    });
    stops.push(async () => {
      await node.stop();
      await server.close();
    });
    await expect(node.start()).rejects.toMatchObject({ code: CoordinatorErrorCode.STALE_EPOCH });
    expect(node.status().state).toBe('halted');
    expect(node.domain).toBeUndefined();
  });
});
