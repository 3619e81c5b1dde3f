import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { StreamDecoder, encodePageData, type PageDataRecord } from '@colo/stream';
import { CoordinatorErrorCode, decodeAckBody, decodeGuestIdentity, encodeAckBody, encodeGuestIdentity, PendingCheckpoint } from '../internals.js';
import { ArenaPool, PageArena } from '../../src/engine/page-arena.js';
import { streamHead } from './stream-head.js';

function pageRecord(pfns: number[], fill: number): PageDataRecord {
  const bytes = Buffer.concat([
    streamHead(),
    encodePageData(pfns, () => new Uint8Array(4096).fill(fill)),
  ]);
  const items = new StreamDecoder({ kind: 'libxl' }).push(bytes);
  const rec = items.find((i) => i.item === 'record' && i.record.kind === 'PAGE_DATA');
  return (rec as { record: PageDataRecord }).record;
}

describe('PendingCheckpoint', () => {
  it('touches the guest only in applyTo, and then with every buffered page', () => {
    const guest = new SimulatedGuest({ memoryBytes: 64 * 4096, startSuspended: true });
    const before = guest.memoryDigest();
    const cp = new PendingCheckpoint();
    cp.addPages(pageRecord([3, 4], 0xab), guest.pageCount);
    cp.addPages(pageRecord([4], 0xcd), guest.pageCount); // sent twice: the later copy wins
    cp.setVcpuContext(guest.getVcpuContext());
    cp.libxcComplete = true;
    expect(guest.memoryDigest()).toBe(before);
    expect(cp.complete).toBe(true);
    cp.applyTo(guest);
    expect(guest.page(3)[100]).toBe(0xab);
    expect(guest.page(4)[100]).toBe(0xcd);
    guest.destroy();
  });

  it('refuses a record whose data is shorter than its pages (nothing stale from a reused arena is applied)', () => {
    const r = pageRecord([3, 4], 0xab);
    const cp = new PendingCheckpoint();
    expect(() => cp.addPages({ ...r, data: r.data.subarray(0, 4096 + 100) }, 64)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
    expect(() => cp.addPages({ ...r, dataPieces: [r.data.subarray(0, 4096)] }, 64)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
  });

  it('refuses a page beyond the guest while buffering (so applying can never fail half-way)', () => {
    const cp = new PendingCheckpoint();
    expect(() => cp.addPages(pageRecord([70], 1), 64)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.GUEST_MISMATCH }));
  });
});

/** The PAGE_DATA records of `bytes` as the secondary engine decodes them: page data as pieces of the chunks. */
function pieceRecords(bytes: Buffer, cuts: number[]): PageDataRecord[] {
  const decoder = new StreamDecoder({ kind: 'libxl', pageDataPieces: true });
  const out: PageDataRecord[] = [];
  let at = 0;
  for (const c of [...cuts.map((x) => x % bytes.length), bytes.length].sort((a, b) => a - b)) {
    if (c <= at) continue;
    for (const i of decoder.push(bytes.subarray(at, c))) if (i.item === 'record' && i.record.kind === 'PAGE_DATA') out.push(i.record);
    at = c;
  }
  return out;
}

describe('PendingCheckpoint with an arena pool (page memory reused across checkpoints)', () => {
  it('applies exactly the pages of each checkpoint, whatever the cuts, with the arena reused and discards leaving no trace', () => {
    const pages = 48;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            batches: fc.array(fc.uniqueArray(fc.integer({ min: 0, max: pages - 1 }), { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 }),
            cuts: fc.array(fc.nat(), { maxLength: 12 }),
            discard: fc.boolean(),
            // Staged like an initial synchronisation: pages copied from the pieces straight into a staging copy.
            staged: fc.boolean(),
          }),
          { minLength: 1, maxLength: 5 },
        ),
        (checkpoints) => {
          const guest = new SimulatedGuest({ memoryBytes: pages * 4096, startSuspended: true });
          // Slabs of 3 pages: records share slabs, spill to the next, and some (> 3 pages) get memory of their own.
          const pool = new ArenaPool(() => new PageArena({ slabBytes: 3 * 4096, keepBytes: 6 * 4096 }));
          // The guest starts with its own memory (a formatted store): the model starts from it.
          const model = new Map<number, Buffer>();
          for (let pfn = 0; pfn < pages; pfn++) model.set(pfn, Buffer.from(guest.page(pfn)));
          for (const c of checkpoints) {
            const content = new Map<number, Buffer>();
            const stream = Buffer.concat([
              streamHead(),
              ...c.batches.map((b) =>
                encodePageData(b, (pfn) => {
                  const page = randomBytes(4096);
                  content.set(pfn, page); // a pfn in two batches: the later copy wins, as in the stream
                  return page;
                }),
              ),
            ]);
            const cp = new PendingCheckpoint(pool);
            if (c.staged) cp.stageInto(guest.stageMemory());
            for (const r of pieceRecords(stream, c.cuts)) cp.addPages(r, guest.pageCount);
            if (c.discard) {
              cp.discard();
              continue;
            }
            cp.setVcpuContext(guest.getVcpuContext());
            cp.libxcComplete = true;
            cp.applyTo(guest);
            for (const [pfn, page] of content) model.set(pfn, page);
            for (let pfn = 0; pfn < pages; pfn++) {
              expect(Buffer.compare(Buffer.from(guest.page(pfn)), model.get(pfn)!)).toBe(0);
            }
          }
          guest.destroy();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('gives the same arena back to the next checkpoint, and keeps no more slab memory than its limit', () => {
    const arena = new PageArena({ slabBytes: 4 * 4096, keepBytes: 8 * 4096 });
    const pool = new ArenaPool(() => arena);
    const guest = new SimulatedGuest({ memoryBytes: 64 * 4096, startSuspended: true });
    const cp = new PendingCheckpoint(pool);
    for (let i = 0; i < 5; i++) cp.addPages(pageRecord([i * 3, i * 3 + 1, i * 3 + 2], i + 1), guest.pageCount);
    expect(arena.heldBytes).toBe(5 * 4 * 4096); // 3 pages a slab: one slab per record
    cp.setVcpuContext(guest.getVcpuContext());
    cp.libxcComplete = true;
    cp.applyTo(guest);
    expect(arena.heldBytes).toBe(8 * 4096);
    expect(pool.acquire()).toBe(arena);
    expect(guest.page(14)[0]).toBe(5);
    guest.destroy();
  });
});

describe('extension records', () => {
  it('round-trip the guest identity and refuse a malformed one', () => {
    const id = { uuid: 'u-1', name: 'g', pageCount: 512 };
    expect(decodeGuestIdentity(encodeGuestIdentity(id))).toEqual(id);
    expect(() => decodeGuestIdentity(new TextEncoder().encode('{"uuid":"u"}'))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
    expect(() => decodeGuestIdentity(Uint8Array.of(0xff, 0xfe))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
  });
  it('round-trip the checkpoint ACK and refuse a wrong length', () => {
    expect(decodeAckBody(encodeAckBody(123456))).toBe(123456);
    expect(() => decodeAckBody(new Uint8Array(4))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
  });
});
