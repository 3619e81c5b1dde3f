import { expect, test } from 'vitest';
import {
  DEFAULT_COMPARE_TIMEOUT_MS,
  DEFAULT_HEARTBEAT,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_HELD_BYTES,
  DEFAULT_MAX_HELD_BYTES_PER_CONNECTION,
  DEFAULT_MAX_PAYLOAD,
  DEFAULT_PRECOPY,
  DEFAULT_TIMINGS,
  NODE_DEFAULTS,
} from './internals.js';

/** Each module's default is the one NODE_DEFAULTS defines (the CLI shows the same table: packages/cli/test/config.test.ts). */
test('every default the modules apply is NODE_DEFAULTS', () => {
  const d = NODE_DEFAULTS;
  expect(d.checkpoint).toMatchObject(DEFAULT_TIMINGS);
  expect(DEFAULT_HEARTBEAT).toEqual(d.heartbeat);
  expect(DEFAULT_PRECOPY).toEqual({ maxRounds: d.checkpoint.precopyMaxRounds, minDirtyPages: d.checkpoint.precopyMinDirty });
  expect(DEFAULT_COMPARE_TIMEOUT_MS).toBe(d.checkpoint.compareTimeoutMs);
  expect(DEFAULT_MAX_HELD_BYTES).toBe(d.output.maxHeldTotal);
  expect(DEFAULT_MAX_HELD_BYTES_PER_CONNECTION).toBe(d.output.maxHeldPerConnection);
  expect(DEFAULT_MAX_PAYLOAD).toBe(d.replication.maxFrameBytes);
  expect(DEFAULT_MAX_FRAME_BYTES).toBe(d.replication.maxFrameBytes);
});
