import { describe, expect, it } from 'vitest';
import { recordedGuest, resp } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('background activity', () => {
  it('dirties pages only in the background region, only while running, and never changes replies', async () => {
    const busy = recordedGuest({ memoryBytes: 4 * 1024 * 1024, backgroundDirtyPagesPerSecond: 5000 });
    const idle = recordedGuest({ memoryBytes: 4 * 1024 * 1024 });
    busy.guest.enableLogDirty();
    busy.guest.readAndClearDirty();
    await sleep(100);
    const dirty = busy.guest.readAndClearDirty();
    const { first, count } = busy.guest.backgroundRegion;
    expect(dirty.length).toBeGreaterThan(20);
    for (const p of dirty) expect(p >= first && p < first + count).toBe(true);

    await busy.guest.suspend();
    busy.guest.readAndClearDirty();
    const digest = busy.guest.memoryDigest();
    await sleep(60);
    expect(busy.guest.peekDirty()).toHaveLength(0);
    expect(busy.guest.memoryDigest()).toBe(digest);
    await busy.guest.resume();

    for (const cmd of [resp('SET', 'a', '1'), resp('INCR', 'a'), resp('GET', 'a'), resp('DBSIZE'), resp('INFO')]) {
      expect(busy.send(1, cmd)).toBe(idle.send(1, cmd));
    }
    busy.guest.destroy();
    idle.guest.destroy();
  });
});
