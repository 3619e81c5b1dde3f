import * as fs from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { readRamFile } from './checkpoint.js';
import { QemuError, QemuErrorCode } from './errors.js';

/**
 * The guest's RAM as the peer holds it: a copy of the RAM file as of the last scan, and the scan that finds
 * which pages changed since. There is no dirty log to ask (this kernel sets no soft-dirty bits; KVM's log is
 * private to QEMU), so every scan reads the whole file. It does so in small chunks that stay in the CPU's cache,
 * compares each page with the copy and copies only the changed ones into it: the memory is read once and the
 * copy written only where it changed, instead of reading the file into a second copy and comparing the two
 * (half the memory traffic, and half the memory). A scan under suspend is split across worker threads, one
 * range each, sharing the copy (a SharedArrayBuffer): the pause is what the guest feels, and while it is paused
 * its vCPUs leave the host's cores free. docs/performance.md has the figures of each way measured.
 */

const PAGE = 4096;
/** 256 KiB: fits a core's L2 with room to spare (1 MiB measured no faster, 4 MiB slower). */
const CHUNK = 256 * 1024;

/**
 * Scans [from, to) of the open RAM file `fd` against `mirror`: returns the changed pfns in `out` (from index 0)
 * and their count; with `update`, changed pages are copied into the mirror. Self-contained (everything through
 * its arguments): the worker threads run this very function's source.
 */
function scanRange(
  io: { readSync: typeof fs.readSync },
  fd: number,
  mirror: Buffer,
  chunk: Buffer,
  from: number,
  to: number,
  update: boolean,
  out: Uint32Array,
): number {
  const page = 4096;
  let n = 0;
  for (let off = from; off < to; ) {
    const got = io.readSync(fd, chunk, 0, Math.min(chunk.length, to - off), off);
    if (got <= 0 || got % page !== 0) throw new Error(`the RAM file ended at ${off + Math.max(got, 0)} bytes of ${to}`);
    for (let p = 0; p < got; p += page) {
      // Buffer.compare is one memcmp in C++: per page, the loop's own cost is small next to it.
      if (chunk.compare(mirror, off + p, off + p + page, p, p + page) !== 0) {
        if (update) chunk.copy(mirror, off + p, p, p + page);
        out[n++] = (off + p) / page;
      }
    }
    off += got;
  }
  return n;
}

/** A worker's side: scans the range it is sent, answers the changed pfns (or the error's message). */
const WORKER_SOURCE = `
const fs = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const scanRange = ${scanRange.toString()};
const mirror = Buffer.from(workerData.shared);
const chunk = Buffer.allocUnsafe(workerData.chunk);
parentPort.on('message', ({ id, path, from, to }) => {
  let fd;
  try {
    fd = fs.openSync(path, 'r');
    const out = new Uint32Array((to - from) / 4096);
    const n = scanRange(fs, fd, mirror, chunk, from, to, true, out);
    const pfns = out.slice(0, n);
    parentPort.postMessage({ id, pfns }, [pfns.buffer]);
  } catch (e) {
    parentPort.postMessage({ id, error: String(e && e.message || e) });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
});
`;

/** Threads a scan uses unless told: the host's cores, at most 4 (more gain nothing on memory bandwidth). */
export function defaultScanThreads(): number {
  return Math.min(4, availableParallelism());
}

export interface RamMirrorOptions {
  /** Threads a scan under suspend is split across. Default: the host's cores, at most 4. 1: no workers. */
  threads?: number;
}

export class RamMirror {
  /** The RAM as of the last load or scan (what the peer holds once those pages are sent). */
  readonly pages: Buffer;
  private readonly threads: number;
  private readonly chunk = Buffer.allocUnsafe(CHUNK);
  private workers: Worker[] | undefined;
  private closed = false;
  /** Numbers each scan's requests: a worker's answer is taken only by the request it answers. */
  private requests = 0;

  constructor(bytes: number, o: RamMirrorOptions = {}) {
    if (bytes <= 0 || bytes % PAGE !== 0) throw new QemuError(QemuErrorCode.BAD_CONFIG, `a RAM mirror of ${bytes} bytes: a positive multiple of ${PAGE}`);
    this.pages = Buffer.from(new SharedArrayBuffer(bytes));
    this.threads = Math.max(1, Math.min(o.threads ?? defaultScanThreads(), bytes / PAGE));
  }

  /** Copies the whole file (a first synchronisation sends every page anyway). */
  load(ramPath: string): void {
    try {
      readRamFile(ramPath, this.pages, 0);
    } catch (e) {
      if (e instanceof QemuError) throw e;
      throw new QemuError(QemuErrorCode.EXITED, `the guest's RAM file ${ramPath} cannot be read: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The pages that differ from the mirror, ascending; with `update`, the mirror takes them. On this thread. */
  scanSync(ramPath: string, update: boolean): Uint32Array {
    const out = new Uint32Array(this.pages.length / PAGE);
    const n = withFile(ramPath, (fd) => scanRange(fs, fd, this.pages, this.chunk, 0, this.pages.length, update, out));
    return out.slice(0, n);
  }

  /** As scanSync(path, true), split across the worker threads (the guest should be paused: it is the pause). */
  async scan(ramPath: string): Promise<Uint32Array> {
    if (this.closed) throw new QemuError(QemuErrorCode.BAD_CONFIG, 'the RAM mirror was closed');
    if (this.threads === 1) return this.scanSync(ramPath, true);
    const workers = (this.workers ??= Array.from({ length: this.threads }, () => this.startWorker()));
    const pagesEach = Math.ceil(this.pages.length / PAGE / workers.length);
    const id = ++this.requests;
    let broken = false;
    // Every range answered before the scan ends, failed or not: no worker may still be writing the mirror
    // when the next scan (or a page read) starts.
    const settled = await Promise.allSettled(
      workers.map((w, i) => {
        const from = Math.min(this.pages.length, i * pagesEach * PAGE);
        const to = Math.min(this.pages.length, (i + 1) * pagesEach * PAGE);
        return from === to ? Promise.resolve(new Uint32Array(0)) : ask(w, { id, path: ramPath, from, to }, () => (broken = true));
      }),
    );
    if (broken) {
      // A thread that failed or ended is not asked again: the next scan starts a fresh set.
      for (const w of workers) void w.terminate();
      if (this.workers === workers) this.workers = undefined;
    }
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const parts = settled.map((r) => (r as PromiseFulfilledResult<Uint32Array>).value);
    // Each range's pfns are ascending and the ranges are in order: concatenated, they are ascending.
    const out = new Uint32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Stops the worker threads (a mirror is closed with its domain). */
  close(): void {
    this.closed = true;
    for (const w of this.workers ?? []) void w.terminate();
    this.workers = undefined;
  }

  private startWorker(): Worker {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { shared: this.pages.buffer, chunk: CHUNK } });
    // Idle workers never keep a process alive.
    w.unref();
    return w;
  }
}

/** One range scanned by a worker; its failure (the file gone, the worker gone) is QEMU_EXITED: the RAM is gone. */
function ask(w: Worker, range: { id: number; path: string; from: number; to: number }, broken: () => void): Promise<Uint32Array> {
  return new Promise((resolve, reject) => {
    const done = () => {
      w.off('message', onMessage);
      w.off('error', onError);
      w.off('exit', onExit);
    };
    const onMessage = (m: { id: number; pfns?: Uint32Array; error?: string }) => {
      if (m.id !== range.id) return;
      done();
      if (m.pfns) resolve(m.pfns);
      else reject(new QemuError(QemuErrorCode.EXITED, `the guest's RAM could not be scanned: ${m.error}`));
    };
    const onError = (e: Error) => {
      done();
      broken();
      reject(new QemuError(QemuErrorCode.EXITED, `a RAM scan thread failed: ${e.message}`, { cause: e }));
    };
    // A thread that ends (terminated, out of memory) never answers: the wait ends with it.
    const onExit = (code: number) => {
      done();
      broken();
      reject(new QemuError(QemuErrorCode.EXITED, `a RAM scan thread ended (code ${code})`));
    };
    w.on('message', onMessage);
    w.once('error', onError);
    w.once('exit', onExit);
    w.postMessage(range);
  });
}

function withFile<T>(path: string, use: (fd: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new QemuError(QemuErrorCode.EXITED, `the guest's RAM file ${path} cannot be read: ${(e as Error).message}`, { cause: e });
  }
  try {
    return use(fd);
  } catch (e) {
    if (e instanceof QemuError) throw e;
    throw new QemuError(QemuErrorCode.EXITED, `the guest's RAM file ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    fs.closeSync(fd);
  }
}

/** The ascending union of two ascending pfn lists. */
export function unionPfns(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length || j < b.length) {
    const x = i < a.length ? a[i]! : Infinity;
    const y = j < b.length ? b[j]! : Infinity;
    const v = x <= y ? x : y;
    if (x === v) i++;
    if (y === v) j++;
    out[n++] = v;
  }
  return out.slice(0, n);
}
