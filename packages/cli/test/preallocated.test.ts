import { Writable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { createLogger } from '@colo/coordinator';
import { DomainErrorCode } from '@colo/domain';
import { preallocateGuestMemory } from '../src/node/preallocated.js';

const MiB = 1024 * 1024;

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ nodeId: 'test', destination }), lines };
}

describe('guest.prealloc in colo node', () => {
  test('logs the memory it committed and hands it once to a guest of its size', async () => {
    const { logger, lines } = capturingLogger();
    const take = await preallocateGuestMemory(2 * MiB, logger);
    expect(lines.find((l) => l.msg === 'guest memory preallocated')).toMatchObject({ level: 'info', bytes: 2 * MiB });
    const memory = take(2 * MiB);
    expect(memory?.byteLength).toBe(2 * MiB);
    // A second guest (a re-synchronisation) gets fresh memory.
    expect(take(2 * MiB)).toBeUndefined();
  });

  test('a guest of another size (the primary decides it) leaves the memory unused, with a warn', async () => {
    const { logger, lines } = capturingLogger();
    const take = await preallocateGuestMemory(2 * MiB, logger);
    expect(take(4 * MiB)).toBeUndefined();
    expect(lines.find((l) => l.level === 'warn')).toMatchObject({ preallocated: 2 * MiB, guest: 4 * MiB, msg: expect.stringContaining('goes unused') });
    expect(take(2 * MiB)).toBeUndefined();
  });

  test('a size the domain refuses rejects with its typed error', async () => {
    const { logger } = capturingLogger();
    await expect(preallocateGuestMemory(4097, logger)).rejects.toMatchObject({ code: DomainErrorCode.BAD_OPTIONS });
  });
});
