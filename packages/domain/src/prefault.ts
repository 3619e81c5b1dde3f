import { Worker } from 'node:worker_threads';
import { DomainError, DomainErrorCode } from './errors.js';

/** Longest wait for the helper to finish one chunk (a few milliseconds normally) before giving up loudly. */
const CHUNK_WAIT_LIMIT_MS = 10_000;

/** Chunk states, one Int32 each in shared memory. */
const UNTOUCHED = 0;
const FAULTING = 1;
const READY = 2;
/** The owner's: written by the owner (or given up by the helper), never by the helper. */
const OWNED = 3;

/**
 * How far ahead of the owner's front (the chunk after the highest it claimed) the helper works, at least. With
 * no gap, an owner that catches up with the helper waits for the chunk the helper is faulting, then finds the
 * helper on the next one, and so on: the two go in lockstep and only the helper faults. With a gap of 2 the
 * helper leaves the owner's next chunk to the owner, and the two fault side by side.
 */
const LEAD_CHUNKS = 2;

/**
 * The helper thread: zero-fills each chunk it claims (writing faults the pages in; the bytes are zero already),
 * then marks it READY. Plain JavaScript, so the thread needs no TypeScript loader. `st[n]` (after the n chunk
 * states) is the owner's front.
 */
const HELPER = `
const { workerData } = require('node:worker_threads');
const { memory, states, chunkBytes } = workerData;
const bytes = new Uint8Array(memory);
const st = new Int32Array(states);
const n = st.length - 1;
for (let k = 0; k < n; k++) {
  k = Math.max(k, Atomics.load(st, n) + ${LEAD_CHUNKS} - 1);
  if (k >= n) break;
  if (Atomics.compareExchange(st, k, ${UNTOUCHED}, ${FAULTING}) !== ${UNTOUCHED}) continue;
  bytes.fill(0, k * chunkBytes, Math.min(bytes.length, (k + 1) * chunkBytes));
  Atomics.store(st, k, ${READY});
  Atomics.notify(st, k);
}
`;

/**
 * Faults in fresh memory on another thread, ahead of the thread that fills it. Writing into never-touched memory
 * costs a page fault per 4 KiB page (the kernel allocates and zeroes it): for a 1 GiB initial synchronisation
 * that was most of the secondary's time (945 ms of 1.6 s busy in its profile), on the one thread that also
 * receives the stream. Here a helper thread pays it, on the other core, chunk by chunk in ascending order.
 *
 * Ownership of each chunk is decided by one compare-and-swap on its state: the helper writes only chunks it
 * claimed while UNTOUCHED, and the owner of the memory calls `claim` before writing a range, which takes every
 * still-untouched chunk for itself (the helper then skips it) and waits for chunks the helper is filling. So the
 * helper never writes a byte after the owner did; its writes are zeroes into zeroed memory anyway.
 */
export class Prefaulter {
  readonly memory: SharedArrayBuffer;
  private readonly chunkBytes: number;
  private readonly chunks: number;
  private readonly states: Int32Array;
  private readonly worker: Worker;
  /** Resolves when the helper thread has exited (done, stopped or failed). */
  readonly helperDone: Promise<void>;

  constructor(memory: SharedArrayBuffer, chunkBytes = 2 * 1024 * 1024) {
    this.memory = memory;
    this.chunkBytes = chunkBytes;
    this.chunks = Math.ceil(memory.byteLength / chunkBytes);
    // One state per chunk, then the owner's front (see LEAD_CHUNKS).
    this.states = new Int32Array(new SharedArrayBuffer(4 * (this.chunks + 1)));
    this.worker = new Worker(HELPER, { eval: true, workerData: { memory, states: this.states.buffer, chunkBytes } });
    // Never keeps the process alive, and a helper that fails costs only speed: the owner faults its chunks itself.
    this.worker.unref();
    this.worker.on('error', () => this.stop());
    this.helperDone = new Promise((resolve) =>
      this.worker.on('exit', () => {
        this.helperGone();
        resolve();
      }),
    );
  }

  /** Makes bytes [start, end) the caller's to write: afterwards the helper never writes them. */
  claim(start: number, end: number): void {
    const st = this.states;
    const last = Math.ceil(end / this.chunkBytes) - 1;
    // Move the front (never back: the later, scattered writes of a synchronisation land below it).
    if (last + 1 > Atomics.load(st, this.chunks)) Atomics.store(st, this.chunks, last + 1);
    for (let k = Math.floor(start / this.chunkBytes); k <= last; k++) {
      let s = Atomics.load(st, k);
      if (s === READY || s === OWNED) continue;
      if (s === UNTOUCHED) {
        s = Atomics.compareExchange(st, k, UNTOUCHED, OWNED);
        if (s === UNTOUCHED) continue;
      }
      // FAULTING: the helper is on this chunk (a few milliseconds at most).
      const deadline = performance.now() + CHUNK_WAIT_LIMIT_MS;
      while (Atomics.load(st, k) === FAULTING) {
        if (performance.now() > deadline) {
          throw new DomainError(DomainErrorCode.STAGING_STALLED, `the memory pre-fault helper did not finish chunk ${k} in ${CHUNK_WAIT_LIMIT_MS} ms`);
        }
        Atomics.wait(st, k, FAULTING, 100);
      }
    }
  }

  /**
   * How many chunks the helper has faulted (READY), is faulting now, and how many are the owner's (OWNED): for
   * tests and diagnostics.
   */
  chunkCounts(): { faultedByHelper: number; faulting: number; owners: number } {
    let faultedByHelper = 0;
    let faulting = 0;
    let owners = 0;
    for (let k = 0; k < this.chunks; k++) {
      const s = Atomics.load(this.states, k);
      if (s === READY) faultedByHelper++;
      else if (s === FAULTING) faulting++;
      else if (s === OWNED) owners++;
    }
    return { faultedByHelper, faulting, owners };
  }

  /**
   * For memory nobody has written yet (preallocateMemory): waits for the helper, then faults in, on this thread,
   * the chunks it left to the owner (the first LEAD_CHUNKS - 1 of them, or every chunk if it failed). Zeroes
   * written over an owner's bytes would destroy them, hence "nobody has written yet".
   */
  async faultAllUnwritten(): Promise<void> {
    // Here the caller waits for the helper: it must keep the process alive meanwhile (a node that preallocates
    // before it opens any socket has nothing else that would).
    this.worker.ref();
    await this.helperDone;
    const bytes = new Uint8Array(this.memory);
    for (let k = 0; k < this.chunks; k++) {
      if (Atomics.load(this.states, k) === OWNED) bytes.fill(0, k * this.chunkBytes, Math.min(bytes.length, (k + 1) * this.chunkBytes));
    }
  }

  /**
   * Stops the helper: every untouched chunk becomes the owner's, and the helper, once through the chunk it may be
   * filling, finds nothing left and exits. Not terminated mid-chunk: its chunk would stay FAULTING.
   */
  stop(): void {
    const st = this.states;
    for (let k = 0; k < this.chunks; k++) Atomics.compareExchange(st, k, UNTOUCHED, OWNED);
  }

  /** The helper exited (done, or failed): a chunk it was filling holds zeroes as before, so it is the owner's. */
  private helperGone(): void {
    this.stop();
    const st = this.states;
    for (let k = 0; k < this.chunks; k++) {
      if (Atomics.compareExchange(st, k, FAULTING, OWNED) === FAULTING) Atomics.notify(st, k);
    }
  }
}
