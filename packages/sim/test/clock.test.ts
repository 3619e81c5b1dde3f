import { describe, expect, it } from 'vitest';
import { SIM_EPOCH_MS, SimClock } from '../src/clock.js';

describe('SimClock', () => {
  it('fires in time order (equal times in scheduling order), settles promises between callbacks, and fakes the clocks', async () => {
    const clock = new SimClock();
    const uninstall = clock.install();
    const seen: string[] = [];
    try {
      setTimeout(() => seen.push(`b@${Date.now() - SIM_EPOCH_MS}`), 20);
      setTimeout(() => {
        seen.push(`a@${performance.now()}`);
        // A promise continuation runs before the next callback.
        void Promise.resolve().then(() => seen.push('a-then'));
      }, 10);
      setTimeout(() => seen.push('c'), 20);
      setImmediate(() => seen.push('immediate'));
      const cancelled = setTimeout(() => seen.push('never'), 5);
      clearTimeout(cancelled);
      let n = 0;
      const every = setInterval(() => {
        if (++n === 3) clearInterval(every);
        seen.push(`tick${n}`);
      }, 15);
      await clock.run(100);
    } finally {
      uninstall();
    }
    expect(seen).toEqual(['immediate', 'a@10', 'a-then', 'tick1', 'b@20', 'c', 'tick2', 'tick3']);
    expect(clock.now).toBe(100);
    // Uninstalled: the real clocks are back.
    expect(Math.abs(Date.now() - new Date().getTime())).toBeLessThan(1000);
  });

  it('a frozen host runs nothing until it thaws; then what fell due runs, in order, at the thaw', async () => {
    const clock = new SimClock();
    const uninstall = clock.install();
    const seen: string[] = [];
    try {
      clock.later('a', 0, () => {
        setTimeout(() => seen.push(`a1@${performance.now()}`), 10);
        setTimeout(() => seen.push(`a2@${performance.now()}`), 30);
        // Work a promise continuation schedules is the host's too.
        void Promise.resolve().then(() => setTimeout(() => seen.push(`a3@${performance.now()}`), 20));
      });
      clock.later('b', 25, () => seen.push(`b@${performance.now()}`));
      clock.later(undefined, 5, () => clock.freeze('a'));
      clock.later(undefined, 1000, () => clock.thaw('a'));
      await clock.run(2000);
    } finally {
      uninstall();
    }
    expect(seen).toEqual(['b@25', 'a1@1000', 'a3@1000', 'a2@1000']);
  });
});
