/**
 * The simulation's clock: while installed, setTimeout, setInterval, setImmediate (and their clears), Date.now and
 * performance.now are the simulation's. Nothing runs by itself: run() fires the due callbacks one at a time, in
 * time order (equal times in the order they were scheduled, as Node does), and lets every promise settle between
 * two of them, so a node's asynchronous code runs as it would between two events of a real event loop.
 *
 * Each callback belongs to the host (node) whose code scheduled it: a callback and every promise continuation it
 * leads to run before the next callback fires, so whatever they schedule belongs to the same host (cheaper than an
 * AsyncLocalStorage, whose promise hooks cost a tenth of a run). The simulation hands work to a host by scheduling
 * it in that host's name (within()). freeze(host) stops a host as SIGSTOP stops a process: its callbacks that fall
 * due while it is frozen wait and run at thaw(), in order, with the clock at the thaw: the host then acts on what
 * it believed before, however long it was away.
 */

interface Timer {
  id: number;
  at: number;
  seq: number;
  fn: (...args: unknown[]) => void;
  args: unknown[];
  /** ms between runs of an interval; undefined for a one-shot. */
  every: number | undefined;
  host: string | undefined;
  cancelled: boolean;
}

/** What the faked functions return: enough of Node's Timeout for the code that unrefs and clears them. */
class SimTimeout {
  readonly id: number;
  constructor(id: number) {
    this.id = id;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  hasRef(): boolean {
    return true;
  }
  refresh(): this {
    return this;
  }
  [Symbol.toPrimitive](): number {
    return this.id;
  }
}

/** Date.now() at simulated time 0: a fixed instant, so that runs replay byte for byte. */
export const SIM_EPOCH_MS = Date.UTC(2026, 0, 1);

export class SimClock {
  /** Simulated ms since the start. */
  #now = 0;
  #seq = 0;
  #nextId = 1;
  /** Pending timers in a binary heap ordered by (at, seq). */
  readonly #heap: Timer[] = [];
  readonly #byId = new Map<number, Timer>();
  /** The host whose callback (and its promise continuations) is running; undefined: the simulation's own. */
  #current: string | undefined;
  readonly #frozen = new Map<string, Timer[]>();
  #uninstall: (() => void) | undefined;
  /** Callbacks fired so far (a measure of the work simulated). */
  fired = 0;

  get now(): number {
    return this.#now;
  }

  /**
   * Runs `fn` (synchronously) as host `host`: what it schedules belongs to that host. Promise continuations it
   * leaves run as the host of the callback that is firing: hand a host asynchronous work with later(), never here.
   */
  within<T>(host: string | undefined, fn: () => T): T {
    const outer = this.#current;
    this.#current = host;
    try {
      return fn();
    } finally {
      this.#current = outer;
    }
  }

  /** Runs `fn` as host `host` after `delay` ms: all of it, promise continuations included, is that host's. */
  later(host: string | undefined, delay: number, fn: () => void): void {
    this.within(host, () => this.schedule(fn, delay));
  }

  /** The host whose code is running (undefined: the simulation's own). */
  get currentHost(): string | undefined {
    return this.#current;
  }

  schedule(fn: (...args: unknown[]) => void, delay: number, args: unknown[] = [], every?: number): SimTimeout {
    const d = Number.isFinite(delay) && delay > 0 ? delay : 0;
    const t: Timer = { id: this.#nextId++, at: this.#now + d, seq: this.#seq++, fn, args, every, host: this.#current, cancelled: false };
    this.#byId.set(t.id, t);
    this.#push(t);
    return new SimTimeout(t.id);
  }

  cancel(handle: unknown): void {
    if (handle === undefined || handle === null) return;
    const id = typeof handle === 'number' ? handle : handle instanceof SimTimeout ? handle.id : Number(handle);
    const t = this.#byId.get(id);
    if (!t) return;
    t.cancelled = true;
    this.#byId.delete(id);
  }

  freeze(host: string): void {
    if (!this.#frozen.has(host)) this.#frozen.set(host, []);
  }

  isFrozen(host: string): boolean {
    return this.#frozen.has(host);
  }

  /** The host runs again: what fell due while it was frozen runs now, in the order it fell due. */
  thaw(host: string): void {
    const waiting = this.#frozen.get(host);
    if (!waiting) return;
    this.#frozen.delete(host);
    for (const t of waiting) {
      t.at = this.#now;
      t.seq = this.#seq++;
      this.#push(t);
    }
  }

  /** Forgets a host's callbacks (its process is gone). */
  kill(host: string): void {
    this.#frozen.delete(host);
    for (const t of this.#heap) if (t.host === host) t.cancelled = true;
  }

  /**
   * Fires every callback due up to `until` (simulated ms), letting promises settle after each, and leaves the
   * clock at `until`. Stops early when `stop()` says so (checked after each callback).
   */
  async run(until: number, stop?: () => boolean): Promise<void> {
    const settle = this.#settle;
    for (;;) {
      const t = this.#pop(until);
      if (!t) break;
      this.#now = Math.max(this.#now, t.at);
      if (t.host !== undefined && this.#frozen.has(t.host)) {
        this.#frozen.get(t.host)!.push(t);
        continue;
      }
      if (t.every !== undefined) {
        t.at = this.#now + Math.max(1, t.every);
        t.seq = this.#seq++;
        this.#push(t);
      } else {
        this.#byId.delete(t.id);
      }
      this.fired++;
      this.#current = t.host;
      try {
        t.fn(...t.args);
        await settle();
      } finally {
        this.#current = undefined;
      }
      if (stop?.()) return;
    }
    this.#now = Math.max(this.#now, until);
  }

  /** Replaces the global timer functions and clocks with this clock's; returns what undoes it. */
  install(): () => void {
    if (this.#uninstall) return this.#uninstall;
    const g = globalThis as unknown as Record<string, unknown>;
    const saved = {
      setTimeout: g.setTimeout,
      clearTimeout: g.clearTimeout,
      setInterval: g.setInterval,
      clearInterval: g.clearInterval,
      setImmediate: g.setImmediate,
      clearImmediate: g.clearImmediate,
      dateNow: Date.now,
      perfNow: Object.getOwnPropertyDescriptor(performance, 'now'),
    };
    const realImmediate = saved.setImmediate as (fn: () => void) => unknown;
    // Every microtask (and nextTick) queued by a callback has run once the event loop reaches an immediate.
    this.#settle = () => new Promise<void>((resolve) => realImmediate(resolve));
    g.setTimeout = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => this.schedule(fn, ms ?? 0, args);
    g.setInterval = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => this.schedule(fn, ms ?? 0, args, ms ?? 0);
    g.setImmediate = (fn: (...a: unknown[]) => void, ...args: unknown[]) => this.schedule(fn, 0, args);
    g.clearTimeout = g.clearInterval = g.clearImmediate = (h: unknown) => this.cancel(h);
    Date.now = () => SIM_EPOCH_MS + this.#now;
    Object.defineProperty(performance, 'now', { value: () => this.#now, configurable: true, writable: true });
    this.#uninstall = () => {
      g.setTimeout = saved.setTimeout;
      g.clearTimeout = saved.clearTimeout;
      g.setInterval = saved.setInterval;
      g.clearInterval = saved.clearInterval;
      g.setImmediate = saved.setImmediate;
      g.clearImmediate = saved.clearImmediate;
      Date.now = saved.dateNow;
      if (saved.perfNow) Object.defineProperty(performance, 'now', saved.perfNow);
      else delete (performance as unknown as Record<string, unknown>).now;
      this.#uninstall = undefined;
    };
    return this.#uninstall;
  }

  #settle: () => Promise<void> = () => new Promise<void>((resolve) => setImmediate(resolve));

  #push(t: Timer): void {
    const h = this.#heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  /** The earliest live timer due at or before `until`, removed from the heap. */
  #pop(until: number): Timer | undefined {
    const h = this.#heap;
    while (h.length > 0) {
      const top = h[0]!;
      if (!top.cancelled && top.at > until) return undefined;
      const last = h.pop()!;
      if (h.length > 0) {
        h[0] = last;
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < h.length && before(h[l]!, h[m]!)) m = l;
          if (r < h.length && before(h[r]!, h[m]!)) m = r;
          if (m === i) break;
          [h[i], h[m]] = [h[m]!, h[i]!];
          i = m;
        }
      }
      if (!top.cancelled) return top;
    }
    return undefined;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
