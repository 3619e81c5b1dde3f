import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';

/**
 * Page deltas (the page-delta extension): a changed page sent as the difference from the copy the secondary
 * already holds, instead of whole. The difference is the XOR of the new page with that base, cut into runs of
 * 32-bit words: unchanged words are skipped, changed ones carried as their XOR. A key-value write that changes a
 * few bytes of a 4 KiB page costs a few dozen bytes; a page whose bytes did not change at all is not sent (the
 * secondary holds it already). Each page names a checksum of its base (pageChecksum): a secondary whose copy is
 * not that base refuses the delta (DELTA_BASE_MISMATCH) and never builds a wrong page from it.
 *
 * PAGE_DELTA record body (little-endian; an OPTIONAL record of the libxc layer, among the PAGE_DATA records of a
 * checkpoint; docs/protocol.md):
 *
 *     u32 count, u32 reserved (0)
 *     count x { u64 pfn, u32 base_checksum, u32 encoded_bytes }
 *     the encodings, in the same order, each encoded_bytes long (a multiple of 4)
 *
 * An encoding is a sequence of runs, each a u32 header (low 16 bits: words to skip; high 16 bits: words that
 * follow) and that many u32 XOR words. Runs cover the page from its start; words after the last run are unchanged.
 */
export const PAGE_DELTA_RECORD = 0x80000c03;
export const PAGE_BYTES = 4096;
const WORDS = PAGE_BYTES / 4;
/** Per page in a PAGE_DELTA record, beyond its encoding (pfn, checksum, length); PAGE_DATA spends 8 on a pfn. */
export const DELTA_ENTRY_BYTES = 16;
const HEADER_BYTES = 8;
/** Delta encodings longer than this are not smaller than the whole page in PAGE_DATA (4096 + 8 bytes). */
export const MAX_DELTA_BYTES = PAGE_BYTES + 8 - DELTA_ENTRY_BYTES - 4;

const spareSum = new Uint32Array(1024);

/**
 * The base checksum: a Fletcher-style pair of 32-bit sums over the page's 1,024 words (position-dependent: a moved
 * or swapped word changes it), folded into 32 bits. Not a CRC: it guards against a base that is not the one the
 * primary encoded against (a bug, a missed page), on a link that is authenticated already; the encoder computes it
 * in the pass it makes over the words anyway, where zlib's CRC-32 cost a second pass (1 us a page).
 */
export function pageChecksum(page: Uint8Array): number {
  return wordsChecksum(words(page, spareSum));
}

/** pageChecksum's sums over any number of words (a page's, or a device state's: EMULATOR_DELTA). */
function wordsChecksum(w: Uint32Array): number {
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < w.length; i++) {
    s1 = (s1 + w[i]!) | 0;
    s2 = (s2 + s1) | 0;
  }
  return fold(s1, s2);
}

function fold(s1: number, s2: number): number {
  return (Math.imul(s2, 0x9e3779b1) ^ s1) >>> 0;
}

/** A 4 KiB page as words: a view when aligned, else a copy into `spare`. */
function words(page: Uint8Array, spare: Uint32Array): Uint32Array {
  if (page.byteLength !== PAGE_BYTES) throw new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, `a page of ${page.byteLength} bytes`);
  if (page.byteOffset % 4 === 0) return new Uint32Array(page.buffer, page.byteOffset, WORDS);
  new Uint8Array(spare.buffer, spare.byteOffset, PAGE_BYTES).set(page);
  return spare;
}

/**
 * Encodes `page` against `base` into `out` (as words, from word index `at`): returns the number of words written,
 * or -1 when the encoding would be longer than MAX_DELTA_BYTES (send the page whole). `out` needs room for
 * MAX_DELTA_BYTES / 4 words from `at`. `baseChecksum` is pageChecksum(base), computed in the same pass.
 */
export class DeltaEncoder {
  private readonly spareA = new Uint32Array(WORDS);
  private readonly spareB = new Uint32Array(WORDS);
  /** pageChecksum of the base of the last encode() that returned a length. */
  baseChecksum = 0;

  encode(page: Uint8Array, base: Uint8Array, out: Uint32Array, at: number): number {
    const p = words(page, this.spareA);
    const b = words(base, this.spareB);
    const limit = at + MAX_DELTA_BYTES / 4;
    let o = at;
    let i = 0;
    let s1 = 0;
    let s2 = 0;
    while (i < WORDS) {
      const from = i;
      while (i < WORDS && p[i] === b[i]) {
        s1 = (s1 + b[i]!) | 0;
        s2 = (s2 + s1) | 0;
        i++;
      }
      if (i === WORDS) break;
      const skip = i - from;
      const start = i;
      // A run of changed words ends at two equal words in a row: one equal word costs less carried than split.
      while (i < WORDS && (p[i] !== b[i] || (i + 1 < WORDS && p[i + 1] !== b[i + 1]))) {
        s1 = (s1 + b[i]!) | 0;
        s2 = (s2 + s1) | 0;
        i++;
      }
      const lit = i - start;
      if (o + 1 + lit > limit) return -1;
      out[o++] = (skip | (lit << 16)) >>> 0;
      for (let k = start; k < i; k++) out[o++] = (p[k]! ^ b[k]!) >>> 0;
    }
    this.baseChecksum = fold(s1, s2);
    return o - at;
  }
}

/**
 * Applies an encoding to `page` (the base, 4096 bytes, rewritten in place into the new page). Anything but a
 * well-formed encoding of one page is DELTA_CORRUPT, and then `page` is left as it was.
 */
export function applyDelta(page: Uint8Array, encoding: Uint8Array): void {
  if (encoding.byteLength % 4 !== 0 || encoding.byteLength > MAX_DELTA_BYTES) {
    throw new CoordinatorError(CoordinatorErrorCode.DELTA_CORRUPT, `a page delta of ${encoding.byteLength} bytes: a multiple of 4, at most ${MAX_DELTA_BYTES}`);
  }
  const dv = new DataView(encoding.buffer, encoding.byteOffset, encoding.byteLength);
  const n = encoding.byteLength / 4;
  // Checked whole before any word is written: a corrupt delta changes nothing.
  let word = 0;
  for (let j = 0; j < n; ) {
    const h = dv.getUint32(j * 4, true);
    const skip = h & 0xffff;
    const lit = h >>> 16;
    if (lit === 0 || word + skip + lit > WORDS || j + 1 + lit > n) {
      throw new CoordinatorError(CoordinatorErrorCode.DELTA_CORRUPT, `a page delta run (skip ${skip}, ${lit} words) at word ${word} does not fit the page or the delta`);
    }
    word += skip + lit;
    j += 1 + lit;
  }
  const pv = new DataView(page.buffer, page.byteOffset, PAGE_BYTES);
  word = 0;
  for (let j = 0; j < n; ) {
    const h = dv.getUint32(j * 4, true);
    word += h & 0xffff;
    const lit = h >>> 16;
    for (let k = 0; k < lit; k++, word++) pv.setUint32(word * 4, (pv.getUint32(word * 4, true) ^ dv.getUint32((j + 1 + k) * 4, true)) >>> 0, true);
    j += 1 + lit;
  }
}

export interface DeltaPage {
  pfn: number;
  baseChecksum: number;
  /** A view of the record's body. */
  encoding: Uint8Array;
}

/** Builds one PAGE_DELTA body from pages already encoded (word arrays). */
export function encodeDeltaBody(entries: readonly { pfn: number; baseChecksum: number; words: Uint32Array }[]): Uint8Array {
  const payload = entries.reduce((a, e) => a + e.words.length * 4, 0);
  const body = new Uint8Array(HEADER_BYTES + entries.length * DELTA_ENTRY_BYTES + payload);
  const dv = new DataView(body.buffer);
  dv.setUint32(0, entries.length, true);
  let e = HEADER_BYTES;
  let at = HEADER_BYTES + entries.length * DELTA_ENTRY_BYTES;
  for (const x of entries) {
    dv.setUint32(e, x.pfn >>> 0, true);
    dv.setUint32(e + 4, Math.floor(x.pfn / 2 ** 32), true);
    dv.setUint32(e + 8, x.baseChecksum >>> 0, true);
    dv.setUint32(e + 12, x.words.length * 4, true);
    e += DELTA_ENTRY_BYTES;
    body.set(new Uint8Array(x.words.buffer, x.words.byteOffset, x.words.length * 4), at);
    at += x.words.length * 4;
  }
  return body;
}

/** Reads a PAGE_DELTA body; a malformed one is DELTA_CORRUPT (its lengths, its count, a reserved field). */
export function decodeDeltaBody(body: Uint8Array, pageCount: number): DeltaPage[] {
  const bad = (m: string) => new CoordinatorError(CoordinatorErrorCode.DELTA_CORRUPT, `PAGE_DELTA record: ${m}`);
  if (body.byteLength < HEADER_BYTES) throw bad(`${body.byteLength} bytes, shorter than its header`);
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = dv.getUint32(0, true);
  if (dv.getUint32(4, true) !== 0) throw bad('reserved field is not 0');
  if (count === 0 || HEADER_BYTES + count * DELTA_ENTRY_BYTES > body.byteLength) throw bad(`count ${count} does not fit ${body.byteLength} bytes`);
  const out: DeltaPage[] = [];
  let at = HEADER_BYTES + count * DELTA_ENTRY_BYTES;
  for (let i = 0; i < count; i++) {
    const e = HEADER_BYTES + i * DELTA_ENTRY_BYTES;
    const pfn = dv.getUint32(e, true) + dv.getUint32(e + 4, true) * 2 ** 32;
    const len = dv.getUint32(e + 12, true);
    if (pfn >= pageCount) throw bad(`pfn ${pfn} outside the guest's ${pageCount} pages`);
    if (len % 4 !== 0 || len > MAX_DELTA_BYTES || at + len > body.byteLength) throw bad(`page ${pfn}: an encoding of ${len} bytes at ${at} of ${body.byteLength}`);
    out.push({ pfn, baseChecksum: dv.getUint32(e + 8, true), encoding: body.subarray(at, at + len) });
    at += len;
  }
  if (at !== body.byteLength) throw bad(`${body.byteLength - at} bytes after the last encoding`);
  return out;
}

/** A PAGE_DELTA record's body stays under this (one transport frame, as a PAGE_DATA record of 255 pages). */
const MAX_BODY_BYTES = 1024 * 1024 - 64;

/**
 * The primary's side: the copy of each page as a checkpoint last sent it (what the secondary holds), and the
 * split of a checkpoint's pages into deltas against it and pages that go whole. The copy is kept from the first
 * checkpoint on, of the pages checkpoints carry: the initial synchronisation copies nothing (copying the whole
 * guest there made a 1 GiB synchronisation five times slower: first-touch faults and a copy of every page). It
 * notes only which pages it sent as zeros, whose copy the zeroed memory here already is: a page the guest starts
 * using later (a growing heap) goes as a delta against zeros. Any other page goes whole the first time a
 * checkpoint carries it and as a delta after that. At most one more guest's worth of memory on the primary, as
 * much as the guest's working set in practice (replication.compression: false saves it).
 */
const ZERO_PAGE = new Uint8Array(PAGE_BYTES);

export class PageDeltaSender {
  /** Untouched until a page is remembered: memory that is never written costs nothing. */
  private readonly sent: Uint8Array;
  /** Whether `sent` holds page pfn (1) or the secondary's copy is unknown here (0: it goes whole). */
  private readonly known: Uint8Array;
  private readonly encoder = new DeltaEncoder();
  private readonly scratch = new Uint32Array(MAX_DELTA_BYTES / 4);

  constructor(pageCount: number) {
    this.sent = new Uint8Array(pageCount * PAGE_BYTES);
    this.known = new Uint8Array(pageCount);
  }

  /**
   * The synchronisation sends the pages `pfns` (whole, as they are now): those that are zeros are known (the copy
   * of a page never remembered is zeros), the others unknown until a checkpoint carries them.
   */
  synchronised(pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array): void {
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      const zero = Buffer.compare(pageOf(pfn), ZERO_PAGE) === 0;
      if (zero && this.known[pfn] === 1) this.sent.fill(0, pfn * PAGE_BYTES, (pfn + 1) * PAGE_BYTES);
      this.known[pfn] = zero ? 1 : 0;
    }
  }

  /** The copy of page `pfn` as last sent: what the secondary holds once it has the checkpoint in flight. */
  readonly sentPage = (pfn: number): Uint8Array => this.sent.subarray(pfn * PAGE_BYTES, (pfn + 1) * PAGE_BYTES);

  /** The pages `pfns` go whole in a checkpoint: their bytes now are what the secondary will hold. */
  remember(pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array): void {
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      this.sent.set(pageOf(pfn), pfn * PAGE_BYTES);
      this.known[pfn] = 1;
    }
  }

  /**
   * Splits `pfns` (a checkpoint's, the guest suspended): pages outside `whole` whose bytes did not change are
   * left out (`unchanged`); those whose delta is smaller go into PAGE_DELTA bodies (and the copy takes their new
   * bytes); the others, and those no checkpoint carried yet, are returned, to go whole in PAGE_DATA.
   */
  split(pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array, whole: ReadonlySet<number>): { whole: number[]; bodies: Uint8Array[]; deltaPages: number; unchanged: number } {
    const rest: number[] = [];
    const bodies: Uint8Array[] = [];
    let entries: { pfn: number; baseChecksum: number; words: Uint32Array }[] = [];
    let size = HEADER_BYTES;
    let deltaPages = 0;
    let unchanged = 0;
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      if (whole.has(pfn) || this.known[pfn] === 0) {
        rest.push(pfn);
        continue;
      }
      const page = pageOf(pfn);
      const base = this.sent.subarray(pfn * PAGE_BYTES, (pfn + 1) * PAGE_BYTES);
      // Marked dirty, the same bytes all the same (written with what it held): the secondary holds it already.
      if (Buffer.compare(page, base) === 0) {
        unchanged++;
        continue;
      }
      const n = this.encoder.encode(page, base, this.scratch, 0);
      if (n < 0) {
        rest.push(pfn);
        continue;
      }
      if (size + DELTA_ENTRY_BYTES + n * 4 > MAX_BODY_BYTES) {
        bodies.push(encodeDeltaBody(entries));
        entries = [];
        size = HEADER_BYTES;
      }
      entries.push({ pfn, baseChecksum: this.encoder.baseChecksum, words: this.scratch.slice(0, n) });
      size += DELTA_ENTRY_BYTES + n * 4;
      base.set(page);
      deltaPages++;
    }
    if (entries.length > 0) bodies.push(encodeDeltaBody(entries));
    return { whole: rest, bodies, deltaPages, unchanged };
  }
}

/**
 * The secondary's side, at apply: builds each delta page from the guest's current copy (the previous checkpoint,
 * applied) after checking that copy is the named base (pageChecksum). A page whose base differs is never built:
 * it is left out and its pfn listed in `mismatched` (the caller has it resent whole or refuses the checkpoint).
 * Everything is built before the caller writes any page; a corrupt encoding (DELTA_CORRUPT) leaves the guest untouched.
 */
export function buildDeltaPages(
  pages: readonly DeltaPage[],
  currentPage: (pfn: number) => Uint8Array,
): { pfns: number[]; data: Uint8Array; mismatched: number[] } {
  const data = new Uint8Array(pages.length * PAGE_BYTES);
  const pfns: number[] = [];
  const mismatched: number[] = [];
  for (let i = 0; i < pages.length; i++) {
    const p = pages[i]!;
    const base = currentPage(p.pfn);
    if (pageChecksum(base) !== p.baseChecksum) {
      mismatched.push(p.pfn);
      continue;
    }
    const out = data.subarray(pfns.length * PAGE_BYTES, (pfns.length + 1) * PAGE_BYTES);
    out.set(base);
    applyDelta(out, p.encoding);
    pfns.push(p.pfn);
  }
  return { pfns, data: data.subarray(0, pfns.length * PAGE_BYTES), mismatched: mismatched.sort((a, b) => a - b) };
}

/**
 * EMULATOR_DELTA (libxl layer, optional, in place of a checkpoint's EMULATOR_CONTEXT): the device state as the XOR
 * against the one the secondary holds from the previous checkpoint. A QEMU guest's device state is some 600 KB
 * that barely changes between checkpoints (its ROMs and most device registers stay put). Body, little-endian:
 *
 *     u32 length (of the new state), u32 base_length, u32 base_checksum, u32 runs
 *     `runs` runs over the state's 32-bit words (the last one zero-padded): u32 skip, u32 count, count XOR words
 *
 * Only for states of the same length as their base; words after the last run are unchanged.
 */
export const EMULATOR_DELTA_RECORD = 0x80000c04;

function blobWords(blob: Uint8Array): Uint32Array {
  const w = new Uint32Array(Math.ceil(blob.byteLength / 4));
  new Uint8Array(w.buffer).set(blob);
  return w;
}

/** The EMULATOR_DELTA body for `state` against `base`, or undefined when it would not be smaller than `state`. */
export function encodeStateDelta(state: Uint8Array, base: Uint8Array): Uint8Array | undefined {
  if (state.byteLength !== base.byteLength || state.byteLength === 0) return undefined;
  const p = blobWords(state);
  const b = blobWords(base);
  const out: number[] = [state.byteLength, base.byteLength, wordsChecksum(b), 0];
  let runs = 0;
  const limit = Math.floor((state.byteLength * 0.9) / 4);
  let i = 0;
  while (i < p.length) {
    const from = i;
    while (i < p.length && p[i] === b[i]) i++;
    if (i === p.length) break;
    const start = i;
    while (i < p.length && (p[i] !== b[i] || (i + 1 < p.length && p[i + 1] !== b[i + 1]))) i++;
    out.push(start - from, i - start);
    for (let k = start; k < i; k++) out.push((p[k]! ^ b[k]!) >>> 0);
    runs++;
    if (out.length > limit) return undefined;
  }
  out[3] = runs;
  return new Uint8Array(Uint32Array.from(out).buffer);
}

/** The new state from an EMULATOR_DELTA body and the secondary's current state; DELTA_CORRUPT or DELTA_BASE_MISMATCH. */
export function applyStateDelta(body: Uint8Array, base: Uint8Array): Uint8Array {
  const bad = (m: string) => new CoordinatorError(CoordinatorErrorCode.DELTA_CORRUPT, `EMULATOR_DELTA record: ${m}`);
  if (body.byteLength < 16 || body.byteLength % 4 !== 0) throw bad(`${body.byteLength} bytes`);
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const length = dv.getUint32(0, true);
  const baseLength = dv.getUint32(4, true);
  if (length !== baseLength) throw bad(`a state of ${length} bytes against a base of ${baseLength}`);
  if (base.byteLength !== baseLength) {
    throw new CoordinatorError(CoordinatorErrorCode.DELTA_BASE_MISMATCH, `EMULATOR_DELTA against a device state of ${baseLength} bytes; this copy has ${base.byteLength}`);
  }
  const w = blobWords(base);
  const sum = wordsChecksum(w);
  if (sum !== dv.getUint32(8, true)) {
    throw new CoordinatorError(CoordinatorErrorCode.DELTA_BASE_MISMATCH, `EMULATOR_DELTA: the base device state's checksum is ${dv.getUint32(8, true).toString(16)}, this copy's ${sum.toString(16)}`);
  }
  const n = body.byteLength / 4;
  const runs = dv.getUint32(12, true);
  let word = 0;
  let seen = 0;
  for (let j = 4; j < n; seen++) {
    if (j + 2 > n) throw bad('a run header cut short');
    const skip = dv.getUint32(j * 4, true);
    const count = dv.getUint32(j * 4 + 4, true);
    if (count === 0 || word + skip + count > w.length || j + 2 + count > n) throw bad(`a run (skip ${skip}, ${count} words) at word ${word} does not fit`);
    word += skip;
    for (let k = 0; k < count; k++, word++) w[word] = (w[word]! ^ dv.getUint32((j + 2 + k) * 4, true)) >>> 0;
    j += 2 + count;
  }
  // A body cut at a run's end would still parse: the count of runs says it is whole.
  if (seen !== runs) throw bad(`${seen} runs where the header says ${runs}`);
  return new Uint8Array(w.buffer, 0, length).slice();
}
