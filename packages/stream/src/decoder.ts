/**
 * The incremental decoder: bytes in (any chunking), typed items out, every check of Xen's reader and verifier
 * on the way. It tracks which layer owns the next bytes, because the two layers share one channel and reuse
 * type numbers:
 *
 *   libxl header, libxl records ... LIBXC_CONTEXT -> libxc image + domain headers, libxc records ...
 *     plain stream:        libxc END        -> libxl records ... libxl END (the end)
 *     checkpointed stream: libxc CHECKPOINT -> libxl records ... CHECKPOINT_END -> libxc records ... (repeat)
 *
 * Right after CHECKPOINT_END, COLO's primary may send one libxl CHECKPOINT_STATE (NEW_CHECKPOINT) before libxc
 * resumes. Its type (5) is also libxc's X86_PV_VCPU_EXTENDED, so there the guest type decides: COLO guests are
 * HVM, and an HVM stream never carries PV records, so a type 5 record there is CHECKPOINT_STATE.
 */
import { ByteQueue, EMPTY, dataView, isZero, pad8 } from './bytes.js';
import { LIBXC_DOMAIN_HEADER_SIZE, LIBXC_IMAGE_HEADER_SIZE, LIBXL_HEADER_SIZE, RECORD_HEADER_SIZE, XL_HEADER_SIZE } from './encode.js';
import { StreamError, StreamErrorCode } from './errors.js';
import { parseLibxcDomainHeader, parseLibxcImageHeader, parseLibxlHeader, parseXlFixedHeader } from './headers.js';
import { recordTypeName } from './names.js';
import {
  HVM_ONLY_TYPES,
  PV_ONLY_TYPES,
  checkLibxcLength,
  checkLibxlLength,
  isKnownLibxcType,
  isKnownLibxlType,
  isOptionalType,
  parseLibxcBody,
  parseLibxlBody,
  parsePageDataHead,
  parsePageTable,
} from './records.js';
import { DEFAULT_MAX_RECORD_LENGTH, GuestType, LibxcType, LibxlType, type StreamItem, type StreamKind, type StreamRecord } from './types.js';

const C = StreamErrorCode;

export interface DecoderOptions {
  kind: StreamKind;
  /** Longest record body accepted, checked from the record header before the body is buffered. Default 128 MiB (Xen's). */
  maxRecordLength?: number;
  /**
   * Accept an end of input right after a complete checkpoint (CHECKPOINT_END, and COLO's CHECKPOINT_STATE if it
   * follows): a recording of a replication that was still running. Default false: the stream must reach END.
   */
  acceptCheckpointBoundary?: boolean;
  /**
   * PAGE_DATA records carry their page bytes as `dataPieces`, views of the pushed chunks, instead of one
   * contiguous `data` copied together when the bytes straddle chunks (a receiver that applies pages from pieces
   * saves a copy of every page). Default false.
   */
  pageDataPieces?: boolean;
}

type Phase =
  | 'xl-header'
  | 'xl-optional'
  | 'libxl-header'
  | 'libxc-image-header'
  | 'libxc-domain-header'
  | 'record-header'
  | 'record-body'
  | 'page-head'
  | 'page-table'
  | 'page-data'
  | 'done'
  | 'closed';

/** Which parser a record goes to: a layer of the main channel, or the back channel. */
type RecordLayer = 'libxl' | 'libxc' | 'back';

export class StreamDecoder {
  readonly kind: StreamKind;
  readonly maxRecordLength: number;
  private readonly acceptCheckpointBoundary: boolean;
  private readonly pageDataPieces: boolean;
  private readonly queue = new ByteQueue();
  private phase: Phase;
  private _offset = 0;
  private _layer: 'xl' | 'libxl' | 'libxc';
  private error: StreamError | undefined;

  // the record (or xl header) being read
  private recLayer: RecordLayer = 'libxl';
  private recType = 0;
  private recLength = 0;
  private recAt = 0;
  private xlFlags = { mandatoryFlags: 0, optionalFlags: 0, optionalLength: 0 };
  /** PAGE_DATA in progress: entries to read, then the page table's results while the pages arrive. */
  private pageCount = 0;
  private pageTable: { pfns: number[]; types: Uint8Array; dataLength: number } | undefined;

  // stream state
  private libxcStarted = false;
  private _inCheckpoint = false;
  /** Just after CHECKPOINT_END: a type 5 record may be COLO's CHECKPOINT_STATE. */
  private gap = false;
  /** The last record completed a checkpoint (CHECKPOINT_END, or CHECKPOINT_STATE just after it). */
  private atBoundary = false;
  private libxcVersion = 3;
  private guestType = 0;
  private seenStaticDataEnd = false;
  private _checkpoints = 0;

  constructor(opts: DecoderOptions) {
    const kinds: StreamKind[] = ['xl', 'libxl', 'libxc', 'back-channel'];
    if (!kinds.includes(opts?.kind)) throw new StreamError(C.INTERNAL, -1, `unknown stream kind ${String(opts?.kind)}; expected one of ${kinds.join(', ')}`);
    const max = opts.maxRecordLength ?? DEFAULT_MAX_RECORD_LENGTH;
    if (!Number.isInteger(max) || max < 0) throw new StreamError(C.INTERNAL, -1, `maxRecordLength ${max} must be a non-negative integer`);
    this.kind = opts.kind;
    this.maxRecordLength = max;
    this.acceptCheckpointBoundary = opts.acceptCheckpointBoundary ?? false;
    this.pageDataPieces = opts.pageDataPieces ?? false;
    switch (opts.kind) {
      case 'xl':
        this.phase = 'xl-header';
        this._layer = 'xl';
        break;
      case 'libxl':
        this.phase = 'libxl-header';
        this._layer = 'libxl';
        break;
      case 'libxc':
        this.phase = 'libxc-image-header';
        this._layer = 'libxc';
        this.libxcStarted = true;
        break;
      case 'back-channel':
        this.phase = 'record-header';
        this._layer = 'libxl';
        break;
    }
  }

  /** Bytes consumed so far (headers and records fully or partly read; not those still waiting in the buffer). */
  get offset(): number {
    return this._offset;
  }

  /** Which layer owns the next bytes. On the back channel, 'libxl'. */
  get layer(): 'xl' | 'libxl' | 'libxc' {
    return this._layer;
  }

  /** Between libxc's CHECKPOINT and libxl's CHECKPOINT_END. */
  get inCheckpoint(): boolean {
    return this._inCheckpoint;
  }

  /** Number of libxc CHECKPOINT records seen: the number of the current (or last) checkpoint. */
  get checkpoints(): number {
    return this._checkpoints;
  }

  /** The final END was seen. */
  get done(): boolean {
    return this._done;
  }
  private _done = false;

  /** Bytes pushed but not yet consumed (an incomplete header or record). */
  get buffered(): number {
    return this.queue.length;
  }

  /** Decodes what `chunk` completes. Throws a StreamError (and stays poisoned) on the first invalid byte. */
  push(chunk: Uint8Array): StreamItem[] {
    const out: StreamItem[] = [];
    this.pushInto(chunk, out);
    return out;
  }

  /**
   * Like push(), appending to `out`; when it throws, `out` still holds the items decoded before the error
   * (decodeStream uses this to yield every valid item before failing).
   */
  pushInto(chunk: Uint8Array, out: StreamItem[]): void {
    if (this.error) throw this.error;
    try {
      if (!(chunk instanceof Uint8Array)) throw new StreamError(C.INTERNAL, this._offset, `push() needs a Uint8Array, got ${typeof chunk}`);
      if (this.phase === 'closed') throw new StreamError(C.INTERNAL, this._offset, 'push() after end(): create a new decoder for a new stream');
      this.queue.push(chunk);
      this.drain(out);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /** Declares the input complete. Throws TRUNCATED if it stopped inside a header or record, or before END. */
  end(): StreamItem[] {
    if (this.error) throw this.error;
    try {
      if (this.phase === 'closed') return [];
      if (this.phase === 'done') {
        this.phase = 'closed';
        return [];
      }
      if (this.phase === 'record-body' || this.phase.startsWith('page-')) {
        throw new StreamError(
          C.TRUNCATED,
          this.recAt,
          `stream ends inside a ${this.recordName()} record (${this.recLength} body bytes announced at byte ${this.recAt})`,
        );
      }
      if (this.phase === 'xl-optional') throw new StreamError(C.TRUNCATED, 0, `stream ends inside the xl header's optional data (${this.queue.length} of ${this.xlFlags.optionalLength} bytes)`);
      if (this.queue.length > 0) {
        throw new StreamError(C.TRUNCATED, this._offset, `stream ends inside a ${this.phase.replace(/-/g, ' ')} (${this.queue.length} of ${this.need()} bytes)`);
      }
      const clean = (this.kind === 'back-channel' && this.phase === 'record-header') || (this.acceptCheckpointBoundary && this.atBoundary);
      if (!clean) {
        const where = this._inCheckpoint ? ` (inside checkpoint ${this._checkpoints}, before its CHECKPOINT_END)` : this.atBoundary ? ` (after checkpoint ${this._checkpoints})` : '';
        throw new StreamError(C.TRUNCATED, this._offset, `stream ends at byte ${this._offset} before its END record${where}`);
      }
      this.phase = 'closed';
      return [];
    } catch (e) {
      throw this.fail(e);
    }
  }

  private fail(e: unknown): StreamError {
    this.error =
      e instanceof StreamError
        ? e
        : new StreamError(C.INTERNAL, this._offset, `internal decoder error (${e instanceof Error ? e.message : String(e)}); please report it with the stream`, { cause: e });
    return this.error;
  }

  private need(): number {
    switch (this.phase) {
      case 'xl-header':
        return XL_HEADER_SIZE;
      case 'xl-optional':
        return this.xlFlags.optionalLength;
      case 'libxl-header':
        return LIBXL_HEADER_SIZE;
      case 'libxc-image-header':
        return LIBXC_IMAGE_HEADER_SIZE;
      case 'libxc-domain-header':
        return LIBXC_DOMAIN_HEADER_SIZE;
      case 'record-header':
        return RECORD_HEADER_SIZE;
      case 'record-body':
        return pad8(this.recLength);
      case 'page-head':
        return 8;
      case 'page-table':
        return 8 * this.pageCount;
      case 'page-data':
        return this.pageTable!.dataLength;
      default:
        return 0;
    }
  }

  private drain(out: StreamItem[]): void {
    for (;;) {
      if (this.phase === 'done') {
        if (this.queue.length > 0) throw new StreamError(C.TRAILING_DATA, this._offset, `${this.queue.length}+ bytes follow the stream's END record`);
        return;
      }
      const n = this.need();
      if (this.queue.length < n) return;
      const at = this._offset;
      if (this.phase === 'page-data' && this.pageDataPieces) {
        const pieces = n === 0 ? [] : this.queue.takePieces(n);
        this._offset += n;
        this.pageData(pieces.length === 1 ? pieces[0]! : EMPTY, out, pieces);
        continue;
      }
      const bytes = n === 0 ? EMPTY : this.queue.take(n);
      this._offset += n;
      this.step(bytes, at, out);
    }
  }

  private step(b: Uint8Array, at: number, out: StreamItem[]): void {
    switch (this.phase) {
      case 'xl-header':
        this.xlFlags = parseXlFixedHeader(b, at, this.maxRecordLength);
        this.phase = 'xl-optional';
        return;
      case 'xl-optional': {
        const { mandatoryFlags, optionalFlags } = this.xlFlags;
        out.push({ item: 'xl-header', offset: 0, header: { mandatoryFlags, optionalFlags, optionalData: b } });
        this.phase = 'libxl-header';
        this._layer = 'libxl';
        return;
      }
      case 'libxl-header':
        out.push({ item: 'libxl-header', offset: at, header: parseLibxlHeader(b, at) });
        this.phase = 'record-header';
        return;
      case 'libxc-image-header': {
        const header = parseLibxcImageHeader(b, at);
        this.libxcVersion = header.version;
        out.push({ item: 'libxc-image-header', offset: at, header });
        this.phase = 'libxc-domain-header';
        return;
      }
      case 'libxc-domain-header': {
        const header = parseLibxcDomainHeader(b, at);
        this.guestType = header.guestType;
        out.push({ item: 'libxc-domain-header', offset: at, header });
        this.phase = 'record-header';
        return;
      }
      case 'record-header':
        this.recordHeader(b, at);
        return;
      case 'record-body':
        this.recordBody(b, out);
        return;
      case 'page-head':
        this.pageCount = parsePageDataHead(b, this.recLength, this.recAt);
        this.phase = 'page-table';
        return;
      case 'page-table':
        this.pageTable = parsePageTable(b, this.recLength, this.recAt);
        this.phase = 'page-data';
        return;
      case 'page-data':
        this.pageData(b, out);
        return;
    }
  }

  private pageData(data: Uint8Array, out: StreamItem[], dataPieces?: Uint8Array[]): void {
    // The length check of parsePageTable makes the body a multiple of 8: there is no padding to read.
    const { pfns, types } = this.pageTable!;
    this.pageTable = undefined;
    const record: StreamRecord = dataPieces ? { layer: 'libxc', kind: 'PAGE_DATA', pfns, types, data, dataPieces } : { layer: 'libxc', kind: 'PAGE_DATA', pfns, types, data };
    this.atBoundary = false;
    this.phase = 'record-header';
    this.afterLibxc(record);
    out.push({ item: 'record', offset: this.recAt, record });
  }

  private recordName(): string {
    const layer = this.recLayer === 'libxc' ? 'libxc' : 'libxl';
    if (this.recLayer === 'back' && this.recType === LibxcType.CHECKPOINT_DIRTY_PFN_LIST) return recordTypeName('libxc', this.recType);
    return `${layer} ${recordTypeName(layer, this.recType)}`;
  }

  private misplaced(why: string): StreamError {
    return new StreamError(C.MISPLACED_RECORD, this.recAt, `${this.recordName()} record ${why}`);
  }

  private recordHeader(b: Uint8Array, at: number): void {
    const v = dataView(b);
    const type = v.getUint32(0, true);
    const length = v.getUint32(4, true);
    this.recType = type;
    this.recLength = length;
    this.recAt = at;
    if (this.kind === 'back-channel') this.recLayer = 'back';
    else if (this._layer === 'libxc' && this.gap && type === LibxlType.CHECKPOINT_STATE && this.guestType === GuestType.X86_HVM) this.recLayer = 'libxl';
    else this.recLayer = this._layer === 'libxc' ? 'libxc' : 'libxl';

    if (length > this.maxRecordLength) {
      throw new StreamError(
        C.RECORD_TOO_LONG,
        at,
        `${this.recordName()} record announces ${length} bytes, above the limit of ${this.maxRecordLength}; refused before buffering (raise maxRecordLength only if the sender is trusted)`,
      );
    }
    switch (this.recLayer) {
      case 'libxl':
        this.checkLibxlHeader(type, length, at);
        break;
      case 'libxc':
        this.checkLibxcHeader(type, length, at);
        if (type === LibxcType.PAGE_DATA) {
          this.phase = 'page-head';
          return;
        }
        break;
      case 'back':
        this.checkBackChannelHeader(type, length, at);
        break;
    }
    this.phase = 'record-body';
  }

  private checkLibxlHeader(type: number, length: number, at: number): void {
    if (isOptionalType(type)) return;
    if (!isKnownLibxlType(type)) {
      throw new StreamError(C.UNKNOWN_RECORD, at, `unknown mandatory libxl record type 0x${type.toString(16)}: the sender is newer than colo, or the stream is corrupt`);
    }
    checkLibxlLength(type, length, at);
    switch (type) {
      case LibxlType.LIBXC_CONTEXT:
        if (this.libxcStarted) throw this.misplaced('appears twice: a stream carries one libxc context (checkpoints reuse it)');
        return;
      case LibxlType.CHECKPOINT_END:
        if (!this._inCheckpoint) throw this.misplaced('outside a checkpoint (no libxc CHECKPOINT before it)');
        return;
      case LibxlType.CHECKPOINT_STATE:
        if (!this.gap) throw this.misplaced('is only allowed right after CHECKPOINT_END on the main channel (or on the back channel)');
        return;
      case LibxlType.END:
        if (this._inCheckpoint) throw this.misplaced(`inside checkpoint ${this._checkpoints}: CHECKPOINT_END must close it first`);
        return;
    }
  }

  private checkLibxcHeader(type: number, length: number, at: number): void {
    if (isOptionalType(type)) return;
    if (!isKnownLibxcType(type)) {
      throw new StreamError(C.UNKNOWN_RECORD, at, `unknown mandatory libxc record type 0x${type.toString(16)}: the sender is newer than colo, or the stream is corrupt`);
    }
    // Where a record may not appear at all, say so rather than judging its length.
    if (type === LibxcType.CHECKPOINT_DIRTY_PFN_LIST) throw this.misplaced('travels only on the back channel');
    if (this.guestType === GuestType.X86_HVM && PV_ONLY_TYPES.has(type)) throw this.misplaced('is for x86 PV guests; this stream is an HVM guest\'s');
    if (this.guestType === GuestType.X86_PV && HVM_ONLY_TYPES.has(type)) throw this.misplaced('is for x86 HVM guests; this stream is a PV guest\'s');
    checkLibxcLength(type, length, at);
    const v3 = this.libxcVersion >= 3;
    switch (type) {
      case LibxcType.STATIC_DATA_END:
        if (!v3) throw this.misplaced('in a version 2 libxc stream (it exists from version 3)');
        if (this.seenStaticDataEnd) throw this.misplaced('appears twice');
        return;
      case LibxcType.X86_CPUID_POLICY:
      case LibxcType.X86_MSR_POLICY:
        if (!v3) throw this.misplaced('in a version 2 libxc stream (it exists from version 3)');
        return;
      case LibxcType.PAGE_DATA:
        if (v3 && !this.seenStaticDataEnd) throw this.misplaced('before STATIC_DATA_END (a version 3 stream sends its static data first)');
        return;
    }
  }

  private checkBackChannelHeader(type: number, length: number, at: number): void {
    if (isOptionalType(type)) return;
    if (type === LibxlType.CHECKPOINT_STATE) return checkLibxlLength(type, length, at);
    if (type === LibxcType.CHECKPOINT_DIRTY_PFN_LIST) return checkLibxcLength(type, length, at);
    if (isKnownLibxcType(type)) {
      throw new StreamError(C.MISPLACED_RECORD, at, `record type 0x${type.toString(16)} does not belong on the back channel (only CHECKPOINT_STATE and CHECKPOINT_DIRTY_PFN_LIST)`);
    }
    throw new StreamError(C.UNKNOWN_RECORD, at, `unknown mandatory back-channel record type 0x${type.toString(16)}`);
  }

  private recordBody(b: Uint8Array, out: StreamItem[]): void {
    const at = this.recAt;
    const length = this.recLength;
    if (!isZero(b, length, b.length)) throw new StreamError(C.BAD_PADDING, at, `${this.recordName()} record's padding is not zero`);
    const body = b.length === length ? b : b.subarray(0, length);
    let record: StreamRecord;
    const wasBoundary = this.atBoundary;
    this.atBoundary = false;
    this.phase = 'record-header';
    if (this.recLayer === 'back') {
      record = this.recType === LibxcType.CHECKPOINT_DIRTY_PFN_LIST ? parseLibxcBody(this.recType, body, at) : parseLibxlBody(this.recType, body, at);
    } else if (this.recLayer === 'libxl') {
      record = parseLibxlBody(this.recType, body, at);
      this.afterLibxl(record, wasBoundary);
    } else {
      record = parseLibxcBody(this.recType, body, at);
      this.afterLibxc(record);
    }
    out.push({ item: 'record', offset: at, record });
  }

  private afterLibxl(r: StreamRecord, wasBoundary: boolean): void {
    const inGap = this.gap;
    this.gap = false;
    switch (r.kind) {
      case 'END':
        this.phase = 'done';
        this._done = true;
        return;
      case 'LIBXC_CONTEXT':
        this.libxcStarted = true;
        this._layer = 'libxc';
        this.phase = 'libxc-image-header';
        return;
      case 'CHECKPOINT_END':
        this._inCheckpoint = false;
        this._layer = 'libxc';
        this.gap = true;
        this.atBoundary = true;
        return;
      case 'CHECKPOINT_STATE':
        this.atBoundary = inGap && wasBoundary;
        return;
    }
  }

  private afterLibxc(r: StreamRecord): void {
    this.gap = false;
    switch (r.kind) {
      case 'END':
        if (this.kind === 'libxc') {
          this.phase = 'done';
          this._done = true;
        } else this._layer = 'libxl';
        return;
      case 'CHECKPOINT':
        this._checkpoints++;
        // A bare libxc stream has no libxl to hand the channel to; it simply goes on.
        if (this.kind !== 'libxc') {
          this._inCheckpoint = true;
          this._layer = 'libxl';
        }
        return;
      case 'STATIC_DATA_END':
        this.seenStaticDataEnd = true;
        return;
    }
  }
}

/** Decodes a complete stream held in memory (ends it, so truncation is an error). */
export function decodeAll(bytes: Uint8Array, opts: DecoderOptions): StreamItem[] {
  const d = new StreamDecoder(opts);
  const items = d.push(bytes);
  items.push(...d.end());
  return items;
}

/**
 * Decodes a stream as it arrives. Yields every valid item before throwing the StreamError of the first invalid
 * byte. Errors of the source itself (I/O) pass through unchanged, so a caller can tell them apart.
 */
export async function* decodeStream(source: AsyncIterable<Uint8Array>, opts: DecoderOptions): AsyncGenerator<StreamItem> {
  const d = new StreamDecoder(opts);
  for await (const chunk of source) {
    const out: StreamItem[] = [];
    let error: unknown;
    try {
      d.pushInto(chunk, out);
    } catch (e) {
      error = e;
    }
    yield* out;
    if (error !== undefined) throw error;
  }
  yield* d.end();
}
