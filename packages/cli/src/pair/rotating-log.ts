import { closeSync, existsSync, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * A node's log file under `colo pair`, rotated by size as logrotate's `size` and `rotate` would: past `maxBytes`
 * the file becomes FILE.1 (FILE.1 becomes FILE.2 ..., the oldest of `keep` is deleted) and a new FILE starts. A
 * pair left running for weeks keeps at most (keep + 1) x maxBytes of logs. Writes are synchronous: the lines
 * before a crash are on disk, in order.
 */
export class RotatingLog {
  readonly file: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private fd: number;
  private bytes: number;
  private closed = false;

  constructor(file: string, maxBytes = 16 * 1024 * 1024, keep = 3) {
    this.file = file;
    this.maxBytes = maxBytes;
    this.keep = keep;
    this.fd = openSync(file, 'a', 0o600);
    this.bytes = fstatSync(this.fd).size;
  }

  /** Appends `chunk` (output that arrives after close(), a child's last lines, is dropped). */
  write(chunk: Uint8Array): void {
    if (this.closed) return;
    if (this.bytes > 0 && this.bytes + chunk.byteLength > this.maxBytes) this.rotate();
    writeSync(this.fd, chunk);
    this.bytes += chunk.byteLength;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  private rotate(): void {
    closeSync(this.fd);
    rmSync(`${this.file}.${this.keep}`, { force: true });
    for (let i = this.keep - 1; i >= 1; i--) if (existsSync(`${this.file}.${i}`)) renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
    renameSync(this.file, `${this.file}.1`);
    this.fd = openSync(this.file, 'a', 0o600);
    this.bytes = 0;
  }
}
