import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { StreamDecoder, encodePageData, type PageDataRecord } from '@colo/stream';
import { CoordinatorErrorCode, PendingCheckpoint } from '../internals.js';
import { streamHead } from './stream-head.js';

const PAGES = 64;

function pageRecord(pfns: number[], fill: number): PageDataRecord {
  const bytes = Buffer.concat([
    streamHead(),
    encodePageData(pfns, (pfn) => new Uint8Array(4096).fill(fill ^ pfn)),
  ]);
  const rec = new StreamDecoder({ kind: 'libxl' }).push(bytes).find((i) => i.item === 'record' && i.record.kind === 'PAGE_DATA');
  return (rec as { record: PageDataRecord }).record;
}

/** The records of one checkpoint, fed to a PendingCheckpoint. */
function feed(cp: PendingCheckpoint, guest: SimulatedGuest): void {
  cp.addPages(pageRecord([10, 11, 12, 40], 0x31), guest.pageCount);
  cp.addPages(pageRecord([11, 63], 0x52), guest.pageCount); // pfn 11 twice: the later copy wins
  cp.setVcpuContext(guest.getVcpuContext());
  cp.libxcComplete = true;
}

describe('PendingCheckpoint with a memory staging (initial synchronisation)', () => {
  it('applies exactly what the buffered checkpoint applies, and touches the guest only in applyTo', () => {
    const staged = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
    const buffered = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
    const before = staged.memoryDigest();
    const a = new PendingCheckpoint();
    a.stageInto(staged.stageMemory());
    feed(a, staged);
    expect(a.staged).toBe(true);
    expect(staged.memoryDigest()).toBe(before);
    const b = new PendingCheckpoint();
    feed(b, buffered);
    expect(b.staged).toBe(false);
    a.applyTo(staged);
    b.applyTo(buffered);
    expect(staged.memoryDigest()).toBe(buffered.memoryDigest());
    expect(staged.page(11)[0]).toBe(0x52 ^ 11);
    staged.destroy();
    buffered.destroy();
  });

  it('a discarded staged checkpoint leaves the guest exactly as it was', () => {
    const guest = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
    const before = guest.memoryDigest();
    const cp = new PendingCheckpoint();
    cp.stageInto(guest.stageMemory());
    feed(cp, guest);
    cp.discard();
    expect(guest.memoryDigest()).toBe(before);
    guest.destroy();
  });

  it('refuses a staging once pages are buffered (they would be applied out of order)', () => {
    const guest = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
    const cp = new PendingCheckpoint();
    cp.addPages(pageRecord([1], 1), guest.pageCount);
    expect(() => cp.stageInto(guest.stageMemory())).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.INVALID_STATE }));
    guest.destroy();
  });
});
