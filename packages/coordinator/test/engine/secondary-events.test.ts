import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { EmulatorId, encodePageData, encodeRecord } from '@colo/stream';
import { SecondaryCheckpointEngine } from '../../src/engine/secondary-engine.js';
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

function engine(): { e: SecondaryCheckpointEngine; events: string[]; guest: SimulatedGuest } {
  const guest = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
  const events: string[] = [];
  const e = new SecondaryCheckpointEngine({
    mode: 'colo',
    extensions: [],
    send: async () => {},
    hostGuest: () => guest,
    emit: (ev: SecondaryEvent) => events.push(ev.type),
  });
  return { e, events, guest };
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
