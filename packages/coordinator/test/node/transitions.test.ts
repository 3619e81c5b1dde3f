import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stateName } from '../../src/node/transitions.js';

/** The straightforward definition stateName must agree with (it was the implementation before it was made cheaper). */
function reference(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [k, v] = Object.entries(value)[0] ?? ['?', ''];
    const rest = reference(v);
    return rest ? `${k}.${rest}` : k;
  }
  return String(value);
}

describe('stateName', () => {
  it('names the states of real machine values', () => {
    expect(stateName('unprotected')).toBe('unprotected');
    expect(stateName({ protected: 'idle' })).toBe('protected.idle');
    expect(stateName({ protected: { checkpointing: 'awaitingReady' } })).toBe('protected.checkpointing.awaitingReady');
  });

  it('agrees with the reference on any value, odd ones included (empty objects, empty strings, numbers, null)', () => {
    const leaf = fc.oneof(fc.string({ maxLength: 4 }), fc.constant(''), fc.integer(), fc.constant(null), fc.constant(undefined));
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.dictionary(fc.string({ maxLength: 3 }), tie('v'), { maxKeys: 3 })),
    })).v;
    fc.assert(fc.property(value, (v) => stateName(v) === reference(v)), { numRuns: 2000 });
  });
});
