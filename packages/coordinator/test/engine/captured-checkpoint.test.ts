import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { DEFAULT_PRECOPY, PrimaryCheckpointEngine } from '../../src/engine/primary-engine.js';
import { SecondaryCheckpointEngine } from '../../src/engine/secondary-engine.js';
import { Extension } from '../../src/engine/extensions.js';
import { PAGE_DELTA_RECORD } from '../../src/engine/page-delta.js';
import type { ReplicationMode } from '../../src/statechart/types.js';

const PAGES = 512;
const set = (k: string, v: string) => Buffer.from(`*3\r\n$3\r\nSET\r\n$${k.length}\r\n${k}\r\n$${v.length}\r\n${v}\r\n`);
/** PAGE_DELTA's type as it appears little-endian at the start of a record. */
const deltaTag = Buffer.alloc(4);
deltaTag.writeUInt32LE(PAGE_DELTA_RECORD);

/**
 * A Remus checkpoint with page deltas and acknowledgements is captured while the guest is suspended and encoded
 * and sent after it resumes (the encoding is then out of the pause). Here the guest keeps writing between the
 * resume and the send: the secondary must still end up with memory exactly as it was at the suspend. Without
 * acknowledgements, or in COLO, the records are written while the guest is still suspended.
 */
async function checkpointWhileTheGuestWrites(mode: ReplicationMode, extensions: string[]) {
  const guest = new SimulatedGuest({ memoryBytes: PAGES * 4096 });
  guest.openConnection(1);
  for (let k = 0; k < 50; k++) guest.deliverInput(1, set(`key:${k}`, `first-${k}`));
  const replica = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
  const stream: Buffer[] = [];
  /** Per write of checkpoint 2: whether the guest was running, and whether it carried a PAGE_DELTA. */
  const writes: { running: boolean; delta: boolean }[] = [];
  let inCheckpoint = false;
  const digests = new Map<number, string>();
  let fault: Error | undefined;
  // Once resumed, the guest at once changes the pages of the checkpoint being sent (when that is still to come).
  const resume = guest.resume.bind(guest);
  guest.resume = async () => {
    await resume();
    if (inCheckpoint) for (let k = 0; k < 50; k++) guest.deliverInput(1, set(`key:${k}`, `after-the-suspend-${k}`));
  };
  const engine: PrimaryCheckpointEngine = new PrimaryCheckpointEngine({
    domain: guest,
    mode,
    extensions,
    precopy: DEFAULT_PRECOPY,
    send: async (bytes) => {
      stream.push(Buffer.from(bytes));
      if (!inCheckpoint) return;
      writes.push({ running: guest.state === 'running', delta: Buffer.from(bytes).indexOf(deltaTag) >= 0 });
    },
    emit: (e) => {
      if (e.type === 'CHECKPOINT_SENT') engine.resumeGuest();
      if (e.type === 'SECONDARY_LOST' || e.type === 'GUEST_LOST') fault = e.error;
    },
    onCheckpointWritten: (seq, d) => digests.set(seq, (d as SimulatedGuest).memoryDigest()),
  });
  /** Until every queued operation has run, those queued while waiting (the machine's resume) included. */
  const settle = async () => {
    for (let chain = engine.idle(); ; chain = engine.idle()) {
      await chain;
      if (chain === engine.idle()) return;
    }
  };
  engine.startLiveMigration();
  await settle();
  engine.beginCheckpoint(0, 'initial');
  engine.suspendAndSendCheckpoint([]);
  await settle();
  // Checkpoint 1 carries the workload's pages whole (a page goes as a delta from the second time a checkpoint
  // carries it), so that checkpoint 2 has deltas.
  for (let k = 0; k < 50; k++) guest.deliverInput(1, set(`key:${k}`, `warm-${k}-${'w'.repeat(30)}`));
  engine.beginCheckpoint(1, 'periodic');
  engine.suspendAndSendCheckpoint([]);
  await settle();
  await engine.completeCheckpoint();
  for (let k = 0; k < 50; k++) guest.deliverInput(1, set(`key:${k}`, `second-${k}-${'x'.repeat(30)}`));
  inCheckpoint = true;
  engine.beginCheckpoint(2, 'periodic');
  engine.suspendAndSendCheckpoint([]);
  await settle();
  await engine.completeCheckpoint();
  expect(fault).toBeUndefined();

  const applied: string[] = [];
  const secondary: SecondaryCheckpointEngine = new SecondaryCheckpointEngine({
    mode,
    extensions,
    send: async () => {},
    hostGuest: () => replica,
    emit: (e) => {
      if (e.type === 'CHECKPOINT_RECEIVED') secondary.applyCheckpoint();
      if (e.type === 'PRIMARY_LOST') fault = e.error;
    },
    onCheckpointApplied: (_i, d) => applied.push((d as SimulatedGuest).memoryDigest()),
  });
  secondary.receive(Buffer.concat(stream));
  await secondary.idle();
  expect(fault).toBeUndefined();
  expect(applied).toEqual([digests.get(0), digests.get(1), digests.get(2)]);
  expect(writes.some((w) => w.delta)).toBe(true);
  return writes;
}

describe('a checkpoint captured at the suspend', () => {
  const all = [Extension.CHECKPOINT_ACK, Extension.PAGE_DELTA];
  it('Remus with page deltas and acknowledgements: encoded and sent while the guest runs, memory as at the suspend', async () => {
    const writes = await checkpointWhileTheGuestWrites('remus', all);
    expect(writes.every((w) => w.running)).toBe(true);
  });
  it.each([
    ['remus', [Extension.PAGE_DELTA]],
    ['colo', all],
  ] as const)('%s with %j: written while the guest is suspended', async (mode, extensions) => {
    const writes = await checkpointWhileTheGuestWrites(mode, [...extensions]);
    expect(writes.every((w) => !w.running)).toBe(true);
  });
});
