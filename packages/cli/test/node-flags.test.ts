import { describe, expect, test } from 'vitest';
import { hasNodeHeapFlags, NODE_HEAP_FLAGS, withNodeHeapFlags } from '../src/runtime/node-flags.js';

describe('node heap flags', () => {
  test('are added to a command line that lacks them, after what is there', () => {
    expect(withNodeHeapFlags([])).toEqual([...NODE_HEAP_FLAGS]);
    expect(withNodeHeapFlags(['--enable-source-maps'])).toEqual(['--enable-source-maps', ...NODE_HEAP_FLAGS]);
    expect(NODE_HEAP_FLAGS.every((f) => f.startsWith('--') && f.includes('='))).toBe(true);
  });

  test("an operator's own value wins, in either spelling V8 accepts, and is never doubled", () => {
    expect(withNodeHeapFlags(['--initial-old-space-size=512'])).toEqual(['--initial-old-space-size=512']);
    expect(withNodeHeapFlags(['--initial_old_space_size=64'])).toEqual(['--initial_old_space_size=64']);
    expect(withNodeHeapFlags(withNodeHeapFlags([]))).toEqual([...NODE_HEAP_FLAGS]);
  });

  test('a flag with a longer name is not mistaken for one of them', () => {
    expect(withNodeHeapFlags(['--initial-old-space-size-extra=1'])).toHaveLength(1 + NODE_HEAP_FLAGS.length);
  });

  test('hasNodeHeapFlags tells whether a command line carries them', () => {
    expect(hasNodeHeapFlags([])).toBe(false);
    expect(hasNodeHeapFlags(['--import', 'tsx'])).toBe(false);
    expect(hasNodeHeapFlags([...NODE_HEAP_FLAGS])).toBe(true);
    expect(hasNodeHeapFlags(['--initial-old-space-size=256'])).toBe(true);
  });
});
