/**
 * StreamWriter: turns headers, records and page batches into a few large chunks for a transport to send.
 * Everything is copied once, straight into the current chunk (records may span chunks; a socket does not care),
 * so a sender streams a guest of any size with memory bounded by what it writes between two take() calls.
 */
import {
  encodeLibxcDomainHeader,
  encodeLibxcImageHeader,
  encodeLibxlHeader,
  encodeRecord,
  encodeXlHeader,
  writePageData,
  type ByteSink,
  type PageDataOptions,
} from './encode.js';
import { allocBytes } from './bytes.js';
import { StreamError, StreamErrorCode } from './errors.js';
import type { LibxcDomainHeader, LibxcImageHeader, LibxlHeader, StreamRecord, XlHeader } from './types.js';

export interface StreamWriterOptions {
  /** Size of the buffers chunks are cut from (a chunk is at most this big). Default 4 MiB. */
  chunkSize?: number;
  /** How many recycled chunk buffers to keep for reuse (see recycle()). Default 8. */
  maxFreeChunks?: number;
}

export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

export class StreamWriter implements ByteSink {
  private readonly chunkSize: number;
  private buf: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private ready: Uint8Array[] = [];
  private readyBytes = 0;
  private total = 0;
  /** Pieces of each chunk buffer handed out by take() and not yet recycled; the buffer being filled is absent. */
  private readonly outstanding = new Map<ArrayBufferLike, number>();
  private readonly free: Uint8Array[] = [];
  private readonly maxFree: number;

  constructor(opts: StreamWriterOptions = {}) {
    const size = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isInteger(size) || size < 64) throw new StreamError(StreamErrorCode.UNENCODABLE, -1, `chunkSize ${size} must be an integer >= 64`);
    this.chunkSize = size;
    this.maxFree = opts.maxFreeChunks ?? 8;
  }

  /** Bytes written and not yet taken. */
  get byteLength(): number {
    return this.readyBytes + this.pos;
  }

  /** Bytes written since the writer was created: the stream offset of the next byte. */
  get offset(): number {
    return this.total;
  }

  xlHeader(h: XlHeader): this {
    this.write(encodeXlHeader(h));
    return this;
  }

  libxlHeader(h?: Partial<LibxlHeader>): this {
    this.write(encodeLibxlHeader(h));
    return this;
  }

  /** The libxc image header (version 3 unless given) and domain header that follow LIBXC_CONTEXT. */
  libxcHeaders(domain: LibxcDomainHeader, image?: Partial<LibxcImageHeader>): this {
    this.write(encodeLibxcImageHeader(image));
    this.write(encodeLibxcDomainHeader(domain));
    return this;
  }

  record(r: StreamRecord): this {
    this.write(encodeRecord(r));
    return this;
  }

  /** PAGE_DATA records for `pfns`, each page copied once from pageOf(pfn) into the chunks. */
  pageData(pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array, opts?: PageDataOptions): this {
    writePageData(this, pfns, pageOf, opts);
    return this;
  }

  /** Returns the pending chunks (in order) and clears them. The writer never touches a taken chunk again. */
  take(): Uint8Array[] {
    if (this.pos > 0) {
      this.ready.push(this.buf.subarray(0, this.pos));
      // Keep filling the rest of the same allocation: the taken view and the remainder never overlap.
      this.buf = this.buf.subarray(this.pos);
      this.pos = 0;
    }
    const out = this.ready;
    this.ready = [];
    this.readyBytes = 0;
    for (const c of out) this.outstanding.set(c.buffer, (this.outstanding.get(c.buffer) ?? 0) + 1);
    return out;
  }

  /**
   * Optional: hands back a chunk from take() once it has been sent (e.g. in the socket's write callback) and
   * will not be read again. When every chunk cut from a buffer is back, the buffer is reused for new chunks
   * instead of allocating (and page-faulting) fresh memory: a steady sender then runs on a few warm buffers.
   */
  recycle(chunk: Uint8Array): void {
    const buffer = chunk.buffer;
    const left = (this.outstanding.get(buffer) ?? 0) - 1;
    if (left < 0) return; // not ours, or recycled twice: ignore rather than risk reusing live memory
    if (left > 0 || buffer === this.buf.buffer) {
      if (left > 0) this.outstanding.set(buffer, left);
      else this.outstanding.delete(buffer);
      return;
    }
    this.outstanding.delete(buffer);
    if (this.free.length < this.maxFree && buffer.byteLength === this.chunkSize) this.free.push(new Uint8Array(buffer));
  }

  /** The buffer being filled is left empty-handed (fully taken): if all its pieces came back, free it. */
  private releaseFilling(): void {
    const buffer = this.buf.buffer;
    if (buffer.byteLength === this.chunkSize && !this.outstanding.has(buffer) && this.free.length < this.maxFree) this.free.push(new Uint8Array(buffer));
  }

  /** Appends raw bytes (already encoded), copying across chunk boundaries. */
  write(bytes: Uint8Array): void {
    let from = 0;
    const n = bytes.length;
    this.total += n;
    while (from < n) {
      if (this.pos === this.buf.length) {
        if (this.pos > 0) {
          this.ready.push(this.buf);
          this.readyBytes += this.buf.length;
        } else this.releaseFilling();
        // Only the written part of a chunk is ever handed out, so uninitialised memory is safe here.
        this.buf = this.free.pop() ?? allocBytes(this.chunkSize);
        this.pos = 0;
      }
      const k = Math.min(this.buf.length - this.pos, n - from);
      if (from === 0 && k === n) this.buf.set(bytes, this.pos);
      else this.buf.set(bytes.subarray(from, from + k), this.pos);
      this.pos += k;
      from += k;
    }
  }
}
