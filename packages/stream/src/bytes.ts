/**
 * Bytes received but not yet consumed, as a queue of the pushed chunks (the decoder's input, and the
 * coordinator's record framer). Taking n bytes returns a view of a chunk when they lie inside one chunk (the
 * common case for page data) and copies only when they straddle chunks, so each byte is copied at most once and
 * a long record arriving in tiny chunks costs O(n); takePieces() copies nothing.
 */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  private pos = 0;
  /** Unconsumed bytes. */
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Consumes n bytes (n <= length). */
  take(n: number): Uint8Array {
    if (n === 0) return EMPTY;
    const first = this.chunks[this.head]!;
    const avail = first.length - this.pos;
    if (n <= avail) {
      const view = first.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.length -= n;
      if (this.pos === first.length) this.dropHead();
      return view;
    }
    const out = allocBytes(n); // filled completely below
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[this.head]!;
      const k = Math.min(c.length - this.pos, n - filled);
      out.set(c.subarray(this.pos, this.pos + k), filled);
      filled += k;
      this.pos += k;
      if (this.pos === c.length) this.dropHead();
    }
    this.length -= n;
    return out;
  }

  /**
   * The next n bytes (n <= length) without consuming them: a view when they lie inside one chunk, else a copy
   * (e.g. an 8-byte record header split between two reads).
   */
  peek(n: number): Uint8Array {
    if (n === 0) return EMPTY;
    const first = this.chunks[this.head]!;
    if (first.length - this.pos >= n) return first.subarray(this.pos, this.pos + n);
    const out = new Uint8Array(n);
    let filled = 0;
    for (let i = this.head, at = this.pos; filled < n; i++, at = 0) {
      const c = this.chunks[i]!;
      const k = Math.min(c.length - at, n - filled);
      out.set(c.subarray(at, at + k), filled);
      filled += k;
    }
    return out;
  }

  /** Consumes n bytes (n <= length) as views of the pushed chunks, in order: nothing is copied. */
  takePieces(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[this.head]!;
      const k = Math.min(c.length - this.pos, left);
      out.push(c.subarray(this.pos, this.pos + k));
      left -= k;
      this.pos += k;
      if (this.pos === c.length) this.dropHead();
    }
    this.length -= n;
    return out;
  }

  private dropHead(): void {
    this.chunks[this.head] = EMPTY; // let the chunk be collected
    this.head++;
    this.pos = 0;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

export const EMPTY = new Uint8Array(0);

export function pad8(n: number): number {
  // Arithmetic, not bit operations: record lengths are u32 and `| 0` would go negative above 2^31.
  return Math.ceil(n / 8) * 8;
}

export function dataView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function isZero(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

export function hex(n: number): string {
  return '0x' + (n >>> 0).toString(16);
}

const NodeBuffer = (globalThis as { Buffer?: { allocUnsafeSlow(size: number): Uint8Array } }).Buffer;

/**
 * n bytes of memory that the caller overwrites completely before anyone reads them. Where the runtime offers
 * uninitialised memory (Node's Buffer.allocUnsafeSlow) it is used: zero-filling would be a second full pass over
 * every page-sized allocation, which costs as much as the copy itself. Returned as a plain Uint8Array.
 */
export function allocBytes(n: number): Uint8Array {
  if (NodeBuffer && n >= 4096) {
    const b = NodeBuffer.allocUnsafeSlow(n);
    return new Uint8Array(b.buffer, b.byteOffset, n);
  }
  return new Uint8Array(n);
}
