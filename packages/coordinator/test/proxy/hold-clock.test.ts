import { expect, test } from 'vitest';
import { HoldClock } from '../../src/proxy/hold-clock.js';

/** colo_output_hold_seconds: each piece of output's wait, whatever cuts the release makes of the byte stream. */
function clock() {
  let now = 0;
  const seen: number[] = [];
  const c = new HoldClock((s) => seen.push(s), () => now);
  return { c, seen, at: (ms: number) => (now = ms) };
}

test('a piece is observed once the bytes released on its connection reach its end, with its own wait', () => {
  const { c, seen, at } = clock();
  at(0);
  c.written(1, 10);
  at(5);
  c.written(1, 10);
  c.written(2, 4);
  at(8);
  c.released(1, 6); // part of the first piece: nothing yet
  expect(seen).toEqual([]);
  at(10);
  c.released(1, 14); // the rest of the first and all of the second, in one cut
  expect(seen).toEqual([0.01, 0.005]);
  at(30);
  c.released(2, 4);
  expect(seen).toEqual([0.01, 0.005, 0.025]);
});

test('an ended connection forgets what it held; releases on unknown connections are ignored', () => {
  const { c, seen, at } = clock();
  c.written(1, 10);
  c.ended(1);
  at(3);
  c.released(1, 10);
  c.released(7, 10);
  expect(seen).toEqual([]);
  c.written(1, 2);
  at(7);
  c.released(1, 2);
  expect(seen).toEqual([0.004]);
});

test('thousands of pieces held on one connection and released in cuts: each observed exactly once', () => {
  const { c, seen } = clock();
  for (let i = 0; i < 5000; i++) c.written(1, 1);
  for (let i = 0; i < 4990; i++) c.released(1, 1);
  expect(seen.length).toBe(4990);
  c.released(1, 10);
  expect(seen.length).toBe(5000);
  c.written(1, 3);
  c.released(1, 3);
  expect(seen.length).toBe(5001);
});
