import { afterEach, describe, expect, it, vi } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { EmulatorId, encodePageData, encodeRecord } from '@colo/stream';
import { SecondaryCheckpointEngine, type AppliedCheckpointTiming } from '../../src/engine/secondary-engine.js';
import type { SecondaryEvent } from '../../src/statechart/secondary.js';
import { streamHead } from './stream-head.js';

const PAGES = 16;

/** The initial synchronisation's stream, as the primary writes it: headers, pages, state records, CHECKPOINT_END. */
function firstCheckpoint(guest: SimulatedGuest): { records: Buffer; end: Buffer } {
  const records = Buffer.concat([
    streamHead(),
    encodePageData([1, 2, 3], (pfn) => new Uint8Array(4096).fill(pfn)),
    encodeRecord({ layer: 'libxc', kind: 'X86_TSC_INFO', ...guest.getTscInfo() }),
    encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: guest.getVcpuContext() }),
    encodeRecord({ layer: 'libxc', kind: 'HVM_PARAMS', params: guest.getHvmParams() }),
    encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT' }),
    encodeRecord({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: EmulatorId.QEMU_UPSTREAM, index: 0, blob: guest.getDeviceState() }),
  ]);
  return { records, end: Buffer.from(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_END' })) };
}

function engine(stallTimeoutMs?: number): { e: SecondaryCheckpointEngine; events: string[]; guest: SimulatedGuest; applied: [number, AppliedCheckpointTiming][] } {
  const guest = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
  const events: string[] = [];
  const applied: [number, AppliedCheckpointTiming][] = [];
  const e = new SecondaryCheckpointEngine({
    mode: 'colo',
    extensions: [],
    send: async () => {},
    hostGuest: () => guest,
    emit: (ev: SecondaryEvent) => events.push(ev.type),
    onCheckpointApplied: (index, _d, timing) => applied.push([index, timing]),
    stallTimeoutMs,
  });
  return { e, events, guest, applied };
}

describe('SecondaryCheckpointEngine: the events a checkpoint becomes', () => {
  it('records and their CHECKPOINT_END in one delivery: CHECKPOINT_RECEIVED alone', () => {
    const { e, events, guest } = engine();
    const { records, end } = firstCheckpoint(guest);
    e.receive(Buffer.concat([records, end]));
    expect(events).toEqual(['CHECKPOINT_RECEIVED']);
    guest.destroy();
  });

  it('records in one delivery and CHECKPOINT_END in the next: STREAM_PROGRESS, then CHECKPOINT_RECEIVED', () => {
    const { e, events, guest } = engine();
    const { records, end } = firstCheckpoint(guest);
    e.receive(records);
    expect(events).toEqual(['STREAM_PROGRESS']);
    e.receive(end);
    expect(events).toEqual(['STREAM_PROGRESS', 'CHECKPOINT_RECEIVED']);
    guest.destroy();
  });

  it('records split across deliveries, the last with the END: one STREAM_PROGRESS per delivery before it', () => {
    const { e, events, guest } = engine();
    const { records, end } = firstCheckpoint(guest);
    const cut = records.length - 40; // inside the EMULATOR_CONTEXT record
    e.receive(records.subarray(0, cut));
    e.receive(Buffer.concat([records.subarray(cut), end]));
    expect(events).toEqual(['STREAM_PROGRESS', 'CHECKPOINT_RECEIVED']);
    guest.destroy();
  });
});

describe('SecondaryCheckpointEngine: checkpoints received faster than applied', () => {
  it('applies them one by one, in order, announcing the next again after each apply (none skipped)', async () => {
    const { e, events, guest } = engine();
    const { records, end } = firstCheckpoint(guest);
    const next = (fill: number) =>
      Buffer.concat([
        encodePageData([5], () => new Uint8Array(4096).fill(fill)),
        encodeRecord({ layer: 'libxc', kind: 'X86_TSC_INFO', ...guest.getTscInfo() }),
        encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: guest.getVcpuContext() }),
        encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT' }),
        end,
      ]);
    // The initial synchronisation, then two checkpoints (page 5 = 0x11, then page 5 = 0x22 and page 6 = 0x33)
    // arriving whole before the first apply runs.
    e.receive(Buffer.concat([records, end]));
    e.applyCheckpoint();
    await e.idle();
    const second = Buffer.concat([encodePageData([6], () => new Uint8Array(4096).fill(0x33)), next(0x22)]);
    e.receive(Buffer.concat([next(0x11), second]));
    expect(events).toEqual(['CHECKPOINT_RECEIVED', 'CHECKPOINT_APPLIED', 'CHECKPOINT_RECEIVED', 'CHECKPOINT_RECEIVED']);
    e.applyCheckpoint();
    await e.idle();
    // The first of the two: page 5 from it, page 6 not yet; and the second is announced again.
    expect(guest.page(5)[0]).toBe(0x11);
    expect(guest.page(6)[0]).toBe(0);
    expect(events.slice(4)).toEqual(['CHECKPOINT_APPLIED', 'CHECKPOINT_RECEIVED']);
    e.applyCheckpoint();
    await e.idle();
    expect(guest.page(5)[0]).toBe(0x22);
    expect(guest.page(6)[0]).toBe(0x33);
    expect(events.slice(6)).toEqual(['CHECKPOINT_APPLIED']);
    guest.destroy();
  });

  it("times each checkpoint from its own first record to its apply (for the node's slow-checkpoint watch)", async () => {
    const { e, guest, applied } = engine();
    const { records, end } = firstCheckpoint(guest);
    e.receive(records);
    const beforeEnd = performance.now();
    await new Promise((r) => setTimeout(r, 20));
    e.receive(end);
    e.applyCheckpoint();
    await e.idle();
    const second = Buffer.concat([
      encodePageData([5, 6], (pfn) => new Uint8Array(4096).fill(pfn)),
      encodeRecord({ layer: 'libxc', kind: 'X86_TSC_INFO', ...guest.getTscInfo() }),
      encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: guest.getVcpuContext() }),
      encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT' }),
      end,
    ]);
    const sentSecond = performance.now();
    e.receive(second);
    e.applyCheckpoint();
    await e.idle();
    expect(applied.map(([i, t]) => [i, t.pages])).toEqual([
      [0, 3],
      [1, 2],
    ]);
    const [[, first], [, next]] = applied as [[number, AppliedCheckpointTiming], [number, AppliedCheckpointTiming]];
    // The first began with its first records, before the 20 ms wait; the second with its own, not the first's.
    expect(first.start).toBeLessThan(beforeEnd);
    expect(first.end - first.start).toBeGreaterThanOrEqual(19);
    expect(next.start).toBeGreaterThanOrEqual(sentSecond);
    expect(next.end).toBeGreaterThanOrEqual(next.start);
    guest.destroy();
  });
});

describe('SecondaryCheckpointEngine: progress reports of a long checkpoint are coalesced', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** The stream head, then one page record per delivery. */
  function deliveries(n: number): Buffer[] {
    return [streamHead(), ...Array.from({ length: n }, (_, i) => Buffer.from(encodePageData([1 + (i % 3)], () => new Uint8Array(4096).fill(i))))];
  }

  it('reports the first delivery at once, the rest of a burst once more after the interval (late, never dropped)', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { e, events, guest } = engine(1000); // interval: min(20 ms, 1000 / 10)
    for (const d of deliveries(10)) e.receive(d);
    expect(events).toEqual(['STREAM_PROGRESS']);
    vi.advanceTimersByTime(19);
    expect(events).toEqual(['STREAM_PROGRESS']);
    vi.advanceTimersByTime(1);
    expect(events).toEqual(['STREAM_PROGRESS', 'STREAM_PROGRESS']);
    vi.advanceTimersByTime(1000);
    expect(events).toHaveLength(2);
    guest.destroy();
  });

  it('reports every delivery that comes an interval or more after the last report', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { e, events, guest } = engine(1000);
    for (const d of deliveries(4)) {
      e.receive(d);
      vi.advanceTimersByTime(25);
    }
    expect(events).toEqual(['STREAM_PROGRESS', 'STREAM_PROGRESS', 'STREAM_PROGRESS', 'STREAM_PROGRESS', 'STREAM_PROGRESS']);
    guest.destroy();
  });

  it('an owed report is sent before any other event, and the END makes it unnecessary', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { e, events, guest } = engine(1000);
    const { records, end } = firstCheckpoint(guest);
    e.receive(records.subarray(0, 200));
    e.receive(records.subarray(200));
    e.receive(end);
    vi.advanceTimersByTime(1000);
    expect(events).toEqual(['STREAM_PROGRESS', 'CHECKPOINT_RECEIVED']);
    // A corrupt record after an owed report: the report first, then the failure, in the stream's order.
    const second = engine(1000);
    for (const d of deliveries(3)) second.e.receive(d);
    second.e.receive(Buffer.from([0x34, 0x12, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])); // record type 0x1234: none such
    expect(second.events).toEqual(['STREAM_PROGRESS', 'STREAM_PROGRESS', 'PRIMARY_LOST']);
    vi.advanceTimersByTime(1000);
    expect(second.events).toHaveLength(3);
    guest.destroy();
    second.guest.destroy();
  });

  it('without a stall timeout every delivery is reported', () => {
    const { e, events, guest } = engine();
    for (const d of deliveries(3)) e.receive(d);
    expect(events).toEqual(['STREAM_PROGRESS', 'STREAM_PROGRESS', 'STREAM_PROGRESS', 'STREAM_PROGRESS']);
    guest.destroy();
  });
});
