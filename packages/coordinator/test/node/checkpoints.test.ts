import { expect, test } from 'vitest';
import { CompletedCheckpoints } from '../../src/node/checkpoints.js';

test('a secondary\'s applied checkpoint carries its pages and its part (first record to applied), not zeros', () => {
  const c = new CompletedCheckpoints();
  c.applied(0, 1_700_000_000_000, { start: 1000, end: 1250, pages: 16_384 });
  expect(c.last).toMatchObject({ seq: 0, reason: 'initial', pages: 16_384, durationSeconds: 0.25 });
  c.applied(1, 1_700_000_000_500, { start: 2000, end: 2001, pages: 12 });
  expect(c.last).toMatchObject({ seq: 1, pages: 12, durationSeconds: 0.001 });
});
