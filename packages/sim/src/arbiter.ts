import {
  ArbiterError,
  ArbiterErrorCode,
  MemoryArbiter,
  type Arbiter,
  type EpochExpectation,
  type EpochRecord,
  type SwapResult,
} from '@colo/coordinator';
import type { SimClock } from './clock.js';
import type { Rng } from './rng.js';

/** One decision the arbiter took: who asked, what it expected and asked for, and whether it swapped. */
export interface ArbiterDecision {
  at: number;
  host: string;
  expect: EpochExpectation;
  next: EpochRecord;
  swapped: boolean;
}

/**
 * The simulated arbiter: one record (MemoryArbiter's compare-and-swap) reached over the simulated network. A host
 * cut off from it gets ARBITER_UNREACHABLE after its request's timeout; a request can also be applied and its
 * answer lost on the way back (the node sees UNREACHABLE for a swap that happened), as an etcd client would after
 * a timeout. Every swap is recorded, for the invariants.
 */
export class SimArbiter {
  readonly #clock: SimClock;
  readonly #rng: Rng;
  readonly #record = new MemoryArbiter();
  readonly #cutOff = new Set<string>();
  /** Chance that an applied swap's answer is lost. */
  lostAnswers = 0;
  readonly decisions: ArbiterDecision[] = [];

  constructor(clock: SimClock, rng: Rng) {
    this.#clock = clock;
    this.#rng = rng;
  }

  get record(): EpochRecord | null {
    return this.#record.peek();
  }

  cutOff(host: string, off: boolean): void {
    if (off) this.#cutOff.add(host);
    else this.#cutOff.delete(host);
  }

  /** The arbiter as host `host` reaches it. */
  forHost(host: string): Arbiter {
    // The request is handled on the arbiter's side of the network (a frozen node's request in flight still
    // arrives); the answer comes back on the node's (a frozen node hears it when it thaws). Lost either way, the
    // node's own deadline answers UNREACHABLE.
    const ask = <T>(what: () => T, isSwap: boolean): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const deadline = setTimeout(() => reject(new ArbiterError(ArbiterErrorCode.UNREACHABLE, 'the arbiter did not answer within 2000 ms')), 2000);
        if (this.#cutOff.has(host)) return;
        const there = this.#rng.between(0.2, 3);
        const back = this.#rng.between(0.2, 3);
        const lose = isSwap && this.#rng.chance(this.lostAnswers);
        this.#clock.within('arbiter', () =>
          setTimeout(() => {
            if (this.#cutOff.has(host)) return;
            const result = what();
            if (lose) return;
            this.#clock.within(host, () =>
              setTimeout(() => {
                if (this.#cutOff.has(host)) return;
                clearTimeout(deadline);
                resolve(result);
              }, back),
            );
          }, there),
        );
      });
    return {
      kind: 'local',
      where: 'simulated',
      read: () => ask(() => this.#record.peek(), false),
      compareAndSwap: (expect: EpochExpectation, next: EpochRecord): Promise<SwapResult> =>
        ask(() => {
          const r = this.#record.swap(expect, next);
          this.decisions.push({ at: this.#clock.now, host, expect, next, swapped: r.swapped });
          return r;
        }, true),
      close: async () => undefined,
    };
  }
}
