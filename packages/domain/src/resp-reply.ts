/**
 * Accumulates RESP2 replies for one batch of input in a growable buffer, so a pipelined chunk of many commands
 * becomes one output chunk (one write to the client socket, one comparison in COLO).
 */
export class ReplyWriter {
  private buf: Buffer = Buffer.allocUnsafe(16 * 1024);
  private len = 0;

  get length(): number {
    return this.len;
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + extra) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** ASCII text as is (protocol framing). */
  private ascii(s: string): void {
    this.ensure(s.length);
    this.len += this.buf.write(s, this.len, 'latin1');
  }

  simple(s: string): void {
    this.ascii(`+${s}\r\n`);
  }

  ok(): void {
    this.ascii('+OK\r\n');
  }

  /** `message` starts with the error kind (ERR, WRONGTYPE, OOM, ...). */
  error(message: string): void {
    this.ascii(`-${message.replace(/[\r\n]+/g, ' ')}\r\n`);
  }

  integer(n: number | bigint): void {
    this.ascii(`:${n}\r\n`);
  }

  nil(): void {
    this.ascii('$-1\r\n');
  }

  arrayHeader(n: number): void {
    this.ascii(`*${n}\r\n`);
  }

  /** A bulk string copied from `src` (guest memory or an argument). */
  bulk(src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    this.ascii(`$${n}\r\n`);
    this.ensure(n + 2);
    if (n < 64) {
      const b = this.buf;
      let at = this.len;
      for (let i = start; i < end; i++) b[at++] = src[i]!;
    } else {
      this.buf.set(src.subarray(start, end), this.len);
    }
    this.len += n;
    this.buf[this.len++] = 13;
    this.buf[this.len++] = 10;
  }

  bulkString(s: string): void {
    this.bulk(Buffer.from(s, 'utf8'));
  }

  /** The replies so far as a fresh buffer (the caller may keep it), and an empty writer. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.len);
    this.buf.copy(out, 0, 0, this.len);
    this.len = 0;
    if (this.buf.length > 1024 * 1024) this.buf = Buffer.allocUnsafe(16 * 1024);
    return out;
  }
}
