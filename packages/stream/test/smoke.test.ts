import { expect, test } from 'vitest';
import { x } from '@colo/stream';
test('smoke', () => expect(x).toBe(1));
