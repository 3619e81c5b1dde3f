import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { encodeRecord } from '@colo/stream';
import { CoordinatorError, CoordinatorErrorCode } from '../../src/errors.js';
import { DEFAULT_PRECOPY, PrimaryCheckpointEngine } from '../../src/engine/primary-engine.js';
import { SecondaryCheckpointEngine } from '../../src/engine/secondary-engine.js';
import { Extension } from '../../src/engine/extensions.js';
import { PAGE_BYTES } from '../../src/engine/page-delta.js';
import {
  decodeResend,
  decodeResendRequest,
  encodeResend,
  encodeResendRequest,
  PAGE_RESEND_RECORD,
  PAGES_PER_RESEND,
} from '../../src/engine/page-resend.js';
import type { ReplicationMode } from '../../src/statechart/types.js';

const PAGES = 256;
const set = (k: string, v: string) => Buffer.from(`*3\r\n$3\r\nSET\r\n$${k.length}\r\n${k}\r\n$${v.length}\r\n${v}\r\n`);
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as CoordinatorError).code;
  }
  return 'no error';
};

describe('PAGE_RESEND_REQUEST and PAGE_RESEND bodies', () => {
  it('round-trip, a long answer cut into records of at most 255 pages, the last one flagged', () => {
    const pfns = Array.from({ length: 600 }, (_, i) => i * 3);
    expect(decodeResendRequest(encodeResendRequest(pfns), 2000)).toEqual(pfns);
    const page = (pfn: number) => new Uint8Array(PAGE_BYTES).fill(pfn & 0xff);
    const bodies = encodeResend(pfns, page);
    expect(bodies.length).toBe(Math.ceil(600 / PAGES_PER_RESEND));
    const decoded = bodies.map((b) => decodeResend(b, 2000));
    expect(decoded.map((d) => d.last)).toEqual([false, false, true]);
    expect(decoded.flatMap((d) => d.pfns)).toEqual(pfns);
    decoded.forEach((d) => d.pfns.forEach((pfn, i) => expect(d.data[i * PAGE_BYTES]).toBe(pfn & 0xff)));
  });

  it('refuse malformed bodies with PEER_STREAM_ERROR', () => {
    const E = CoordinatorErrorCode.PEER_STREAM_ERROR;
    const req = encodeResendRequest([1, 2, 3]);
    expect(code(() => decodeResendRequest(req.subarray(0, 4), 10))).toBe(E);
    expect(code(() => decodeResendRequest(req.subarray(0, 20), 10))).toBe(E);
    expect(code(() => decodeResendRequest(encodeResendRequest([]), 10))).toBe(E);
    expect(code(() => decodeResendRequest(encodeResendRequest([3, 2]), 10))).toBe(E);
    expect(code(() => decodeResendRequest(encodeResendRequest([1, 1]), 10))).toBe(E);
    expect(code(() => decodeResendRequest(encodeResendRequest([10]), 10))).toBe(E);
    const [answer] = encodeResend([1, 2], () => new Uint8Array(PAGE_BYTES));
    expect(code(() => decodeResend(answer!.subarray(0, answer!.length - 1), 10))).toBe(E);
    expect(code(() => decodeResend(answer!, 2))).toBe(E);
    const flags = Uint8Array.from(answer!);
    flags[4] = 2;
    expect(code(() => decodeResend(flags, 10))).toBe(E);
    const many = Uint8Array.from(answer!);
    new DataView(many.buffer).setUint32(0, PAGES_PER_RESEND + 1, true);
    expect(code(() => decodeResend(many, 10))).toBe(E);
  });
});

/**
 * A primary and a secondary engine wired to each other in one process, the handshake driven by hand as the
 * machines would drive it. `spoil` damages the replica's pages before checkpoint 1 is applied.
 */
async function pairOfEngines(mode: ReplicationMode, opts: { answer?: (bytes: Uint8Array) => Uint8Array | null; stallTimeoutMs?: number } = {}) {
  const extensions = [Extension.CHECKPOINT_ACK, Extension.PAGE_DELTA];
  const guest = new SimulatedGuest({ memoryBytes: PAGES * 4096 });
  guest.openConnection(1);
  for (let k = 0; k < 40; k++) guest.deliverInput(1, set(`key:${k}`, `first-${k}`));
  const replica = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
  const digests = new Map<number, string>();
  const applied: string[] = [];
  const faults: CoordinatorError[] = [];
  let confirmed = 0;
  let secondaryDirty: number[] = [];
  const primary: PrimaryCheckpointEngine = new PrimaryCheckpointEngine({
    domain: guest,
    mode,
    extensions,
    precopy: DEFAULT_PRECOPY,
    send: async (bytes) => {
      const passed = opts.answer ? opts.answer(bytes) : bytes;
      if (passed) secondary.receive(Uint8Array.from(passed));
    },
    emit: (e) => {
      if (e.type === 'CHECKPOINT_SENT' && mode === 'remus') primary.resumeGuest();
      if (e.type === 'SECONDARY_DIRTY') secondaryDirty = [...e.pfns];
      if (e.type === 'SECONDARY_SUSPENDED') setImmediate(() => primary.suspendAndSendCheckpoint(secondaryDirty));
      if (e.type === 'SECONDARY_READY') primary.resumeGuest();
      if (e.type === 'CHECKPOINT_ACK' || e.type === 'SECONDARY_READY') confirmed++;
      if (e.type === 'SECONDARY_LOST' || e.type === 'GUEST_LOST') faults.push(e.error);
    },
    onCheckpointWritten: (seq, d) => {
      digests.set(seq, (d as SimulatedGuest).memoryDigest());
      memoryAt.set(seq, Uint8Array.from(d.pages!(0, PAGES)));
    },
  });
  const memoryAt = new Map<number, Uint8Array>();
  /** Pages of the replica that are neither the primary's at checkpoint `seq` nor that with the damage spoil() does. */
  const wrongPages = (seq: number) => {
    const want = memoryAt.get(seq)!;
    const wrong: number[] = [];
    for (let pfn = 0; pfn < PAGES; pfn++) {
      const a = replica.page(pfn);
      const b = want.subarray(pfn * PAGE_BYTES, (pfn + 1) * PAGE_BYTES);
      if (Buffer.compare(a.subarray(1), b.subarray(1)) !== 0 || (a[0]! !== b[0]! && a[0]! !== (b[0]! ^ 0x80))) wrong.push(pfn);
    }
    return wrong;
  };
  let index = 0;
  const secondary: SecondaryCheckpointEngine = new SecondaryCheckpointEngine({
    mode,
    extensions,
    stallTimeoutMs: opts.stallTimeoutMs ?? 2000,
    send: async (bytes) => primary.receiveBackChannel(Uint8Array.from(bytes)),
    hostGuest: () => replica,
    emit: (e) => {
      if (e.type === 'NEW_CHECKPOINT') secondary.suspendAndReportDirty();
      if (e.type === 'CHECKPOINT_RECEIVED') secondary.applyCheckpoint();
      if (e.type === 'CHECKPOINT_APPLIED') {
        const i = index++;
        if (mode === 'remus') secondary.acknowledge(i);
        else secondary.readyAndResume();
      }
      if (e.type === 'PRIMARY_LOST') faults.push(e.error);
    },
    onCheckpointApplied: (_i, d) => applied.push((d as SimulatedGuest).memoryDigest()),
  });
  const settle = async () => {
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 5));
      await Promise.all([primary.idle(), secondary.idle()]);
    }
  };
  primary.startLiveMigration();
  await settle();
  primary.beginCheckpoint(0, 'initial');
  primary.suspendAndSendCheckpoint([]);
  await settle();
  /** As bad memory would: bytes change under the secondary's guest without its dirty log seeing them. */
  const spoil = async () => {
    if (mode === 'colo') await replica.suspend();
    for (let pfn = 0; pfn < PAGES; pfn++) replica.writePages([pfn], Uint8Array.from(replica.page(pfn)).map((b, i) => (i === 0 ? b ^ 0x80 : b)));
    if (mode === 'colo') await replica.resume();
  };
  const checkpoint = async (seq: number) => {
    for (let k = 0; k < 40; k++) guest.deliverInput(1, set(`key:${k}`, `cp-${seq}-${k}-${'y'.repeat(20)}`));
    primary.beginCheckpoint(seq, 'periodic');
    if (mode === 'colo') primary.sendNewCheckpoint();
    else primary.suspendAndSendCheckpoint([]);
    await settle();
    return primary.completeCheckpoint();
  };
  // A page goes as a delta from the second time a checkpoint carries it (the synchronisation keeps no copy):
  // checkpoint 1 carries the workload's pages whole, so that the checkpoints under test have deltas.
  await checkpoint(1);
  if (faults.length > 0 || confirmed !== 2) throw new Error(`the warm-up checkpoint failed: ${faults.map((f) => f.code).join(', ')}`);
  return { primary, secondary, replica, digests, applied, faults, spoil, checkpoint, wrongPages, confirmed: () => confirmed };
}

describe.each(['remus', 'colo'] as const)('a %s secondary lacking delta bases', (mode) => {
  it('asks for those pages whole and applies the checkpoint with them', async () => {
    const p = await pairOfEngines(mode);
    await p.spoil();
    const m = await p.checkpoint(2);
    expect(p.faults).toEqual([]);
    expect(m!.deltaPages).toBeGreaterThan(0);
    expect(m!.resentPages).toBe(m!.deltaPages);
    expect(p.secondary.resentPages).toBe(m!.resentPages);
    expect(p.confirmed()).toBe(3);
    if (mode === 'remus') expect(p.wrongPages(2)).toEqual([]);
    // Then the pair goes on as before: the next checkpoint's deltas apply against the resent pages.
    const next = await p.checkpoint(3);
    expect(p.faults).toEqual([]);
    expect(next!.resentPages).toBe(0);
    expect(next!.deltaPages).toBeGreaterThan(0);
    expect(p.confirmed()).toBe(4);
    if (mode === 'remus') expect(p.wrongPages(3)).toEqual([]);
  });

  it('a primary that never answers: the checkpoint is dropped unapplied within the stall timeout (PHASE_TIMEOUT)', async () => {
    let drop = false;
    const p = await pairOfEngines(mode, { stallTimeoutMs: 300, answer: (b) => (drop && Buffer.from(b).readUInt32LE(0) === PAGE_RESEND_RECORD ? null : b) });
    drop = true;
    const before = p.applied.length;
    await p.spoil();
    const digest = p.replica.memoryDigest();
    await p.checkpoint(2);
    await new Promise((r) => setTimeout(r, 500));
    expect(p.faults.map((f) => f.code)).toContain(CoordinatorErrorCode.PHASE_TIMEOUT);
    expect(p.applied.length).toBe(before);
    if (mode === 'remus') expect(p.replica.memoryDigest()).toBe(digest);
  });

  it('an answer that ends short, or carries a page not asked for, is a corrupt stream and nothing is applied', async () => {
    for (const lie of ['short', 'extra'] as const) {
      const p = await pairOfEngines(mode, {
        answer: (b) => {
          if (Buffer.from(b).readUInt32LE(0) !== PAGE_RESEND_RECORD) return b;
          const body = Buffer.from(b).subarray(8, 8 + Buffer.from(b).readUInt32LE(4));
          const r = decodeResend(body, PAGES);
          const pfns = lie === 'short' ? r.pfns.slice(1) : [...r.pfns.slice(0, -1), PAGES - 1].sort((x, y) => x - y);
          // Short: a page fewer than asked, or, asked for one, its bytes cut short.
          const forged = pfns.length > 0 ? encodeResend(pfns, () => new Uint8Array(PAGE_BYTES))[0]! : encodeResend(r.pfns, () => new Uint8Array(PAGE_BYTES))[0]!.subarray(0, -8);
          return encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: PAGE_RESEND_RECORD, body: forged });
        },
      });
      const before = p.applied.length;
      await p.spoil();
      await p.checkpoint(2);
      expect(p.faults.map((f) => f.code), lie).toContain(CoordinatorErrorCode.PEER_STREAM_ERROR);
      expect(p.applied.length, lie).toBe(before);
    }
  });
});

it('a PAGE_RESEND nobody asked for is a misplaced record', async () => {
  const p = await pairOfEngines('remus');
  const [body] = encodeResend([1], () => new Uint8Array(PAGE_BYTES));
  p.secondary.receive(encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: PAGE_RESEND_RECORD, body: body! }));
  expect(p.faults.map((f) => f.code)).toEqual([CoordinatorErrorCode.MISPLACED_RECORD]);
});
