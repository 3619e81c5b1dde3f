/**
 * Incremental RESP2 request parser for one connection: multibulk (`*N\r\n$len\r\nbytes\r\n...`, what every
 * client library sends) and inline commands (`SET k v\n`, what telnet and redis-cli's raw mode send).
 * Pure: bytes in, commands out. Its whole state is the unconsumed bytes, so a saved device state can carry a
 * half-received command and a restored guest continues it exactly where the original was.
 */

/** Redis's limits, kept so a client sees the same errors it would from a real server. */
export const MAX_BULK_LENGTH = 512 * 1024 * 1024;
export const MAX_MULTIBULK_COUNT = 1024 * 1024;
export const MAX_INLINE_LENGTH = 64 * 1024;

export class RespProtocolError extends Error {
  override readonly name = 'RespProtocolError';
}

export interface RespParserLimits {
  /** Largest bulk argument accepted (default 512 MiB; the guest lowers it to what its memory could hold). */
  maxBulkLength?: number;
  /** Largest whole command accepted, i.e. the bound on one connection's pending input. */
  maxCommandLength?: number;
}

const CR = 13;
const LF = 10;

/** Result marker: the buffer ends inside a command. */
const INCOMPLETE = -1;

export class RespParser {
  private readonly maxBulk: number;
  private readonly maxCommand: number;
  /** Unconsumed input, kept as chunks until enough has arrived to be worth joining. */
  private chunks: Buffer[] = [];
  private pendingLength = 0;
  /** Bytes needed before a re-parse can make progress (a large bulk arriving in pieces is not re-scanned). */
  private needed = 0;
  private args: Buffer[] = [];

  constructor(limits: RespParserLimits = {}) {
    this.maxBulk = Math.min(limits.maxBulkLength ?? MAX_BULK_LENGTH, MAX_BULK_LENGTH);
    this.maxCommand = limits.maxCommandLength ?? Number.MAX_SAFE_INTEGER;
  }

  /** The unconsumed bytes (device state). */
  pending(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.pendingLength)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Replaces the unconsumed bytes (restoring device state). */
  setPending(bytes: Uint8Array): void {
    this.chunks = bytes.length > 0 ? [Buffer.from(bytes)] : [];
    this.pendingLength = bytes.length;
    this.needed = 0;
  }

  get pendingBytes(): number {
    return this.pendingLength;
  }

  /**
   * Parses every complete command in the pending bytes plus `chunk`, calling `onCommand` for each in order
   * (the args are views valid only during the call). `onCommand` returns false to stop (QUIT): the rest is
   * dropped. Throws RespProtocolError on malformed input, after the commands before it were delivered.
   */
  feed(chunk: Uint8Array, onCommand: (args: Buffer[]) => boolean): void {
    let buf: Buffer;
    if (this.pendingLength === 0) {
      buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    } else {
      this.pendingLength += chunk.length;
      // Copy: the caller may reuse its buffer after we return.
      this.chunks.push(Buffer.from(chunk));
      if (this.pendingLength < this.needed) return;
      buf = Buffer.concat(this.chunks, this.pendingLength);
    }
    this.chunks = [];
    this.pendingLength = 0;
    this.needed = 0;

    let pos = 0;
    while (pos < buf.length) {
      const end = buf[pos] === 0x2a /* '*' */ ? this.parseMultibulk(buf, pos) : this.parseInline(buf, pos);
      if (end === INCOMPLETE) break;
      pos = end;
      const args = this.args;
      this.args = [];
      if (args.length > 0 && !onCommand(args)) return;
    }
    if (pos < buf.length) {
      const rest = buf.subarray(pos);
      if (rest.length > this.maxCommand) throw new RespProtocolError('command larger than the guest accepts');
      this.chunks = [Buffer.from(rest)];
      this.pendingLength = rest.length;
    }
  }

  /** Reads the CRLF-terminated decimal after the type byte at `pos` into lengthValue; returns the next position or INCOMPLETE. */
  private readLength(buf: Buffer, pos: number, what: string): number {
    let i = pos + 1;
    let neg = false;
    if (i < buf.length && buf[i] === 0x2d) {
      neg = true;
      i++;
    }
    let v = 0;
    let digits = 0;
    for (; i < buf.length; i++) {
      const b = buf[i]!;
      if (b >= 0x30 && b <= 0x39) {
        v = v * 10 + (b - 0x30);
        if (++digits > 12) throw new RespProtocolError(`invalid ${what} length`);
        continue;
      }
      if (b !== CR) throw new RespProtocolError(`invalid ${what} length`);
      if (i + 1 >= buf.length) return this.incomplete(i + 2);
      if (buf[i + 1] !== LF || digits === 0) throw new RespProtocolError(`invalid ${what} length`);
      this.lengthValue = neg ? -v : v;
      return i + 2;
    }
    if (i - pos > 32) throw new RespProtocolError(`invalid ${what} length`);
    return this.incomplete(i + 1);
  }

  private lengthValue = 0;

  /** Notes how many bytes (from the start of the current command) must be pending before parsing again. */
  private incomplete(needAbsolute: number): number {
    this.needed = needAbsolute - this.commandStart;
    return INCOMPLETE;
  }

  private commandStart = 0;

  private parseMultibulk(buf: Buffer, start: number): number {
    this.commandStart = start;
    this.args = [];
    let pos = this.readLength(buf, start, 'multibulk');
    if (pos === INCOMPLETE) return INCOMPLETE;
    const count = this.lengthValue;
    if (count > MAX_MULTIBULK_COUNT) throw new RespProtocolError('invalid multibulk length');
    if (count <= 0) return pos; // *0 and *-1: an empty command, ignored as Redis does
    let total = pos - start;
    const args: Buffer[] = new Array(count);
    for (let n = 0; n < count; n++) {
      if (pos >= buf.length) return this.incomplete(pos + 1);
      if (buf[pos] !== 0x24 /* '$' */) {
        throw new RespProtocolError(`expected '$', got '${printable(buf[pos]!)}'`);
      }
      const p = this.readLength(buf, pos, 'bulk');
      if (p === INCOMPLETE) return INCOMPLETE;
      const len = this.lengthValue;
      if (len < 0 || len > this.maxBulk) throw new RespProtocolError('invalid bulk length');
      total += p - pos + len + 2;
      if (total > this.maxCommand) throw new RespProtocolError('command larger than the guest accepts');
      if (p + len + 2 > buf.length) return this.incomplete(p + len + 2);
      if (buf[p + len] !== CR || buf[p + len + 1] !== LF) throw new RespProtocolError('bulk data not followed by CRLF');
      args[n] = buf.subarray(p, p + len);
      pos = p + len + 2;
    }
    this.args = args;
    return pos;
  }

  private parseInline(buf: Buffer, start: number): number {
    this.commandStart = start;
    const nl = buf.indexOf(LF, start);
    if (nl < 0) {
      if (buf.length - start > MAX_INLINE_LENGTH) throw new RespProtocolError('too big inline request');
      return this.incomplete(buf.length + 1);
    }
    if (nl - start > MAX_INLINE_LENGTH) throw new RespProtocolError('too big inline request');
    const lineEnd = nl > start && buf[nl - 1] === CR ? nl - 1 : nl;
    const args: Buffer[] = [];
    let i = start;
    while (i < lineEnd) {
      while (i < lineEnd && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
      if (i >= lineEnd) break;
      const s = i;
      while (i < lineEnd && buf[i] !== 0x20 && buf[i] !== 0x09) i++;
      args.push(buf.subarray(s, i));
    }
    this.args = args;
    return nl + 1;
  }
}

function printable(b: number): string {
  return b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
}
