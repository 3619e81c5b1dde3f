import { afterEach, describe, expect, it } from 'vitest';
import { ALL_EXTENSIONS, CoordinatorErrorCode, Extension } from '../internals.js';
import { PAGE, resp, startPair, waitFor, type Pair } from './pair.js';

/**
 * The page-delta extension between two real nodes: checkpoints of small writes carry deltas (several times
 * fewer bytes than the same pages whole), the secondary's memory equals the primary's after every checkpoint,
 * a pair that does not negotiate it sends whole pages, and a secondary whose copy is not the base a delta names
 * refuses the checkpoint with COLO_DELTA_BASE_MISMATCH instead of building a wrong page.
 */
let pair: Pair | undefined;
afterEach(async () => {
  await pair?.stop();
  pair = undefined;
});

/** Small writes into the primary guest, then a checkpoint; returns its measurement. */
async function writesThenCheckpoint(p: Pair, round: number) {
  for (let k = 0; k < 40; k++) p.guest.deliverInput(1, resp('SET', `key:${(round * 7 + k) % 300}`, `value-${round}-${k}-${'x'.repeat(40)}`));
  await new Promise((r) => setTimeout(r, 20));
  return p.primary.requestCheckpoint('manual');
}

describe.each(['remus', 'colo'] as const)('page deltas in a %s pair', (mode) => {
  it('checkpoints of small writes carry a fraction of the bytes, and the secondary matches the primary', async () => {
    const slow = { checkpoint: { phaseTimeoutMs: 5000, stallTimeoutMs: 5000, remusIntervalMs: 3_600_000, maxIntervalMs: 3_600_000 } };
    pair = await startPair({ mode, pages: 4096, primary: slow, secondary: slow });
    await waitFor('protection', () => pair!.primary.status().protected);
    pair.guest.openConnection(1);
    let pages = 0;
    let bytes = 0;
    for (let round = 0; round < 15; round++) {
      const m = await writesThenCheckpoint(pair, round);
      pages += m.pages;
      bytes += m.bytes;
    }
    // Each checkpoint's closing records (vCPU, device state) are a few KB: the pages dominate all the same.
    console.log(`${mode}: ${pages} pages in ${bytes} bytes (${((pages * PAGE) / bytes).toFixed(1)} x fewer than whole pages)`);
    expect(pages).toBeGreaterThan(30);
    expect(bytes * 4).toBeLessThan(pages * PAGE);
    await waitFor('the last checkpoint applied', () => pair!.secondaryDigests.size >= 16);
    for (const [index, digest] of pair.secondaryDigests) expect(digest, `checkpoint ${index}`).toBe(pair.primaryDigests.get(index + 1));
  });
});

it('a pair that does not negotiate page-delta (replication.compression false on the primary) sends its pages whole', async () => {
  const primary = { replication: { listen: { host: '127.0.0.1', port: 0 }, compression: false } };
  pair = await startPair({ mode: 'remus', pages: 4096, primary, secondary: { extensions: ALL_EXTENSIONS } });
  await waitFor('protection', () => pair!.primary.status().protected);
  pair.guest.openConnection(1);
  const m = await writesThenCheckpoint(pair, 1);
  expect(m.pages).toBeGreaterThan(0);
  expect(m.bytes).toBeGreaterThan(m.pages * PAGE);
});

/** Spoils the secondary's copy of every page (as bad memory would): deltas then name bases it does not hold. */
function spoilSecondary(p: Pair): Map<number, number> {
  const d = p.secondary.domain!;
  const firstBytes = new Map<number, number>();
  for (let pfn = 0; pfn < d.pageCount; pfn++) firstBytes.set(pfn, d.page(pfn)[0]!);
  for (let pfn = 0; pfn < d.pageCount; pfn++) d.writePages([pfn], Uint8Array.from(d.page(pfn)).map((b, i) => (i === 0 ? b ^ 1 : b)));
  return firstBytes;
}

it("a secondary whose copy of a page is not the delta's base asks for those pages whole and applies the checkpoint with them", async () => {
  const slow = { checkpoint: { phaseTimeoutMs: 5000, stallTimeoutMs: 5000, remusIntervalMs: 3_600_000, maxIntervalMs: 3_600_000 } };
  pair = await startPair({ mode: 'remus', pages: 4096, primary: slow, secondary: slow });
  await waitFor('protection', () => pair!.primary.status().protected);
  pair.guest.openConnection(1);
  await writesThenCheckpoint(pair, 0);
  await waitFor('applied', () => pair!.secondaryDigests.size >= 2);
  // The pages checkpoint 2 carries (the primary guest's dirty set) and the primary's memory at that checkpoint.
  const g = pair.guest;
  const readAndClearDirty = g.readAndClearDirty.bind(g);
  let carried: number[] = [];
  g.readAndClearDirty = () => {
    const pfns = readAndClearDirty();
    carried = Array.from(pfns);
    return pfns;
  };
  let primaryMemory: Uint8Array | undefined;
  pair.primary.on('written', (_seq, d) => (primaryMemory = Uint8Array.from(d.pages!(0, d.pageCount))));
  spoilSecondary(pair);
  const m = await writesThenCheckpoint(pair, 1);
  // Only the delta pages went again, not the guest; the checkpoint applied with them.
  expect(m.deltaPages).toBeGreaterThan(0);
  expect(m.resentPages).toBe(m.deltaPages);
  await waitFor('applied', () => pair!.secondaryDigests.size >= 3);
  expect(pair.secondary.status().lastError).toBeNull();
  expect(pair.primary.status().protected).toBe(true);
  // The pages the checkpoint carried are the primary's; the others keep the damage (nothing resends a page no
  // checkpoint names: colo_checkpoint_resent_pages_total tells the operator the secondary's memory drifted).
  const d = pair.secondary.domain!;
  const memory = primaryMemory!;
  const inCheckpoint = new Set(carried);
  expect(inCheckpoint.size).toBe(m.pages);
  for (let pfn = 0; pfn < d.pageCount; pfn++) {
    const want = Uint8Array.from(memory.subarray(pfn * PAGE, (pfn + 1) * PAGE));
    if (!inCheckpoint.has(pfn)) want[0] ^= 1;
    expect(Buffer.compare(d.page(pfn), want), `page ${pfn}`).toBe(0);
  }
});

it("without acknowledgements a Remus secondary refuses a checkpoint whose delta base it lacks (COLO_DELTA_BASE_MISMATCH) and applies none of it", async () => {
  const slow = { checkpoint: { phaseTimeoutMs: 5000, stallTimeoutMs: 5000, remusIntervalMs: 3_600_000, maxIntervalMs: 3_600_000 } };
  // No ACK: the primary may send the next checkpoint before this one is applied, so it cannot answer a resend.
  const noAck = ALL_EXTENSIONS.filter((e) => e !== Extension.CHECKPOINT_ACK);
  pair = await startPair({ mode: 'remus', pages: 4096, primary: { ...slow, extensions: noAck }, secondary: { ...slow, extensions: noAck } });
  await waitFor('protection', () => pair!.primary.status().protected);
  pair.guest.openConnection(1);
  await writesThenCheckpoint(pair, 0);
  await waitFor('applied', () => pair!.secondaryDigests.size >= 2);
  const d = pair.secondary.domain!;
  const before = spoilSecondary(pair);
  const applied = pair.secondaryDigests.size;
  await writesThenCheckpoint(pair, 1).catch(() => undefined);
  await waitFor('the secondary stops following', () => pair!.secondary.status().lastError);
  expect(pair.secondary.status().lastError?.code).toBe(CoordinatorErrorCode.DELTA_BASE_MISMATCH);
  // Nothing of the refused checkpoint reached the guest: every page is as spoilt, none rebuilt from a wrong base.
  expect(pair.secondaryDigests.size).toBe(applied);
  for (let pfn = 0; pfn < d.pageCount; pfn++) expect(d.page(pfn)[0]).toBe(before.get(pfn)! ^ 1);
});
