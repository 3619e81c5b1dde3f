/**
 * Stream codec throughput against memcpy measured in the same run:
 * - baseline: Buffer.copy of the same bytes, in the same chunk size;
 * - encode: StreamWriter.pageData over a 256 MiB guest (pages copied once from guest memory into 4 MiB chunks,
 *   entries written, chunks taken as a sender would), bytes of stream produced per second; pages handed as runs
 *   (pageRun) as colo's senders do (the target), and one view per page (pageOf, for reference);
 * - decode: StreamDecoder with full validation over the encoded stream pushed in 1 MiB and 4 MiB chunks (as a
 *   socket delivers them): pages as views of the chunks copied once into reused page memory, as colo's secondary
 *   receives them (the target), and the general API's copy of each straddling record into new memory (reference).
 * Target: encode and decode >= 0.5 x memcpy. Each figure is the median of 15 runs after a warm-up (ratios: the median of 15 interleaved pairs; this VM drifts within seconds).
 *
 * Run: `npx tsx --conditions=@colo/source bench/run.ts stream` (COLO_BENCH_QUICK=1: 64 MiB).
 */
import { StreamDecoder, StreamWriter, PAGE_SIZE } from '@colo/stream';
import type { BenchRow, BenchSuite } from './harness.js';

const MiB = 1024 * 1024;
const GUEST_BYTES = (process.env.COLO_BENCH_QUICK === '1' ? 64 : 256) * MiB;
const RUNS = 15;
const BATCH_PFNS = 1024; // pfns handed to the writer per call (one PAGE_DATA record, 4 MiB), then its chunks are taken and sent

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Seconds taken by f, median of RUNS after one warm-up. */
function time(f: () => void): number {
  f();
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(once(f));
  return median(runs);
}

function once(f: () => void): number {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/**
 * Runs baseline and subject alternately (the machine is shared: load shifts between two separate series would
 * skew the ratio) and returns the subject's median time and the median of the per-pair ratios.
 */
function paired(baseline: () => void, subject: () => void): { seconds: number; ratio: number } {
  baseline();
  subject();
  const times: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const b = once(baseline);
    const s = once(subject);
    times.push(s);
    ratios.push(b / s);
  }
  return { seconds: median(times), ratio: median(ratios) };
}

function memcpy(src: Buffer, dst: Buffer, chunk: number): void {
  for (let at = 0; at < src.length; at += chunk) src.copy(dst, at, at, Math.min(at + chunk, src.length));
}

/**
 * Encodes every page; `recycle` hands each chunk back as soon as it is "sent", as a sender with a socket would.
 * `runs`: pages are handed as runs of consecutive pfns (PageDataOptions.pageRun, one view per run), as every sender
 * in colo does (the primary's synchronisation and checkpoints, `colo save`: Domain.pages); without, one view per
 * page (pageOf), the codec's general API, where the caller's view per page costs about as much as the encoder.
 */
function encodeAll(memory: Uint8Array, pfns: number[], sink: (c: Uint8Array) => void, recycle = false, runs = false): void {
  const w = new StreamWriter({ chunkSize: 4 * MiB });
  const pageOf = (pfn: number) => memory.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  const opts = runs ? { pageRun: (first: number, count: number) => memory.subarray(first * PAGE_SIZE, (first + count) * PAGE_SIZE) } : undefined;
  for (let i = 0; i < pfns.length; i += BATCH_PFNS) {
    w.pageData(pfns.slice(i, i + BATCH_PFNS), pageOf, opts);
    for (const c of w.take()) {
      sink(c);
      if (recycle) w.recycle(c);
    }
  }
}

/**
 * Decodes the stream pushed in `chunks`; returns the pages seen. `arena` set: the decoder hands pages as views of
 * the chunks (pageDataPieces) and each page run is copied once into `arena` (reused, as the secondary's PageArena
 * is): the receive path colo's secondary takes. Without: the codec's general API, which copies every record that
 * straddles chunks into fresh memory of its own (with 4 MiB records that is every record).
 */
function decodeAll(chunks: Uint8Array[], arena?: Uint8Array): number {
  // A libxc stream positioned after its headers would need them; decode the page records as a back channel
  // cannot (PAGE_DATA is refused there), so feed a bare libxc stream: image + domain header first.
  const d = new StreamDecoder({ kind: 'libxc', pageDataPieces: arena !== undefined });
  let pages = 0;
  d.push(LIBXC_HEADERS);
  for (const c of chunks) {
    for (const item of d.push(c)) {
      if (item.item !== 'record' || item.record.kind !== 'PAGE_DATA') continue;
      pages += item.record.pfns.length;
      if (arena === undefined) continue;
      let at = 0;
      for (const piece of item.record.dataPieces ?? [item.record.data]) {
        arena.set(piece, at);
        at += piece.length;
      }
    }
  }
  return pages;
}

let LIBXC_HEADERS: Uint8Array;

const suite: BenchSuite = {
  name: 'stream codec',
  async run(log) {
    const { encodeLibxcDomainHeader, encodeLibxcImageHeader, encodeRecord } = await import('@colo/stream');
    // Version 2 image: no STATIC_DATA_END needed before PAGE_DATA, so the stream is pages only.
    LIBXC_HEADERS = new Uint8Array([...encodeLibxcImageHeader({ version: 2 }), ...encodeLibxcDomainHeader({ guestType: 2, pageShift: 12, xenMajor: 4, xenMinor: 17 })]);
    void encodeRecord;
    const pageCount = GUEST_BYTES / PAGE_SIZE;
    const memory = Buffer.alloc(GUEST_BYTES);
    for (let i = 0; i < memory.length; i += 4) memory.writeUInt32LE((i * 2654435761) >>> 0, i);
    const pfns = Array.from({ length: pageCount }, (_, i) => i);
    log(`guest: ${GUEST_BYTES / MiB} MiB, ${pageCount} pages; median of ${RUNS} runs`);

    // The encoded stream, kept in the writer's chunks, and flattened for re-chunking.
    const writerChunks: Uint8Array[] = [];
    encodeAll(memory, pfns, (c) => writerChunks.push(c));
    const streamBytes = writerChunks.reduce((n, c) => n + c.length, 0);
    const flat = Buffer.alloc(streamBytes);
    let at = 0;
    for (const c of writerChunks) {
      flat.set(c, at);
      at += c.length;
    }
    log(`stream: ${(streamBytes / MiB).toFixed(1)} MiB in ${writerChunks.length} writer chunks`);

    const dst = Buffer.alloc(streamBytes);
    const rows: BenchRow[] = [];
    const gbps = (bytes: number, s: number) => bytes / s / 1e9;

    const copy4 = gbps(streamBytes, time(() => memcpy(flat, dst, 4 * MiB)));
    const copy1 = gbps(streamBytes, time(() => memcpy(flat, dst, MiB)));
    // (the ratios below come from runs interleaved with memcpy, not from these two figures)
    rows.push({ name: `memcpy (Buffer.copy, 4 MiB pieces, ${streamBytes >> 20} MiB)`, value: copy4, unit: 'GB/s' });
    rows.push({ name: `memcpy (Buffer.copy, 1 MiB pieces, ${streamBytes >> 20} MiB)`, value: copy1, unit: 'GB/s' });

    const copyAt = (size: number) => () => memcpy(flat, dst, size);
    const target = '>= 0.5 x memcpy';
    // The target is on the path colo's senders take (runs); the per-page rows are the general API, for reference.
    const enc = paired(copyAt(4 * MiB), () => encodeAll(memory, pfns, () => {}, true, true));
    rows.push({ name: 'encode PAGE_DATA (StreamWriter, 4 MiB chunks, recycled after send; pages as runs, as colo sends them)', value: gbps(streamBytes, enc.seconds), unit: 'GB/s', baseline: 'memcpy 4 MiB', ratio: enc.ratio, target, met: enc.ratio >= 0.5 });
    const perPage = paired(copyAt(4 * MiB), () => encodeAll(memory, pfns, () => {}, true));
    rows.push({ name: 'encode PAGE_DATA (the same, one view per page from pageOf; information)', value: gbps(streamBytes, perPage.seconds), unit: 'GB/s', baseline: 'memcpy 4 MiB', ratio: perPage.ratio });
    // Decode targets on the path the secondary takes (pages as views, copied once into reused page memory); the
    // general API's copy of each straddling record into fresh memory is shown for reference.
    const arena = new Uint8Array(BATCH_PFNS * PAGE_SIZE);
    for (const [label, size] of [
      ['1 MiB', MiB],
      ['4 MiB', 4 * MiB],
    ] as const) {
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < flat.length; i += size) chunks.push(flat.subarray(i, i + size));
      let pages = 0;
      const dec = paired(copyAt(size), () => (pages = decodeAll(chunks, arena)));
      if (pages !== pageCount) throw new Error(`decoded ${pages} pages, expected ${pageCount}`);
      // The arena holds the last record's pages: the guest's last BATCH_PFNS pages, or the decode is wrong.
      if (Buffer.compare(arena, memory.subarray(memory.length - arena.length)) !== 0) throw new Error('decoded pages differ from the guest memory');
      rows.push({ name: `decode + validate PAGE_DATA (${label} socket chunks; pages as views, copied once into reused page memory, as the secondary receives)`, value: gbps(streamBytes, dec.seconds), unit: 'GB/s', baseline: `memcpy ${label}`, ratio: dec.ratio, target, met: dec.ratio >= 0.5 });
      const copying = paired(copyAt(size), () => (pages = decodeAll(chunks)));
      if (pages !== pageCount) throw new Error(`decoded ${pages} pages, expected ${pageCount}`);
      rows.push({ name: `decode + validate PAGE_DATA (${label} socket chunks; each straddling record copied into new memory; information)`, value: gbps(streamBytes, copying.seconds), unit: 'GB/s', baseline: `memcpy ${label}`, ratio: copying.ratio });
    }
    // Last: its 4 GiB of chunks thrown away leave the collector and the allocator busy for whatever runs next.
    const fresh = paired(copyAt(4 * MiB), () => encodeAll(memory, pfns, () => {}, false, true));
    rows.push({ name: 'encode PAGE_DATA (pages as runs, new memory per chunk; information)', value: gbps(streamBytes, fresh.seconds), unit: 'GB/s', baseline: 'memcpy 4 MiB', ratio: fresh.ratio });
    return rows;
  },
};

export default suite;
