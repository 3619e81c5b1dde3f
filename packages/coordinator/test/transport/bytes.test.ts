import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PeerLink } from '../internals.js';
import { collect, pair, type Listening } from './helpers.js';

const MiB = 1024 * 1024;
let l: Listening;
let server: PeerLink;
let client: PeerLink;
beforeAll(async () => {
  ({ l, server, client } = await pair());
});
afterAll(async () => {
  client.close();
  await l.server.close();
});

/** Sends `chunks` from one end and checks the other end gets exactly their concatenation. */
async function roundTrip(from: PeerLink, to: PeerLink, chunks: Uint8Array[]): Promise<void> {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const want = createHash('sha256');
  for (const c of chunks) want.update(c);
  const sink = collect(to);
  await Promise.all(chunks.map((c) => from.send(c)));
  const got = await sink.waitFor(total);
  sink.stop();
  expect(got.length).toBe(total);
  expect(createHash('sha256').update(got).digest('hex')).toBe(want.digest('hex'));
}

describe('byte exactness', () => {
  const sizes = [1, 7, 4096, 65_537, MiB - 1, MiB, MiB + 1, 3 * MiB + 5, 8 * MiB];

  it('listener -> dialer: chunks of 1 byte to 8 MiB arrive identical and in order', async () => {
    await roundTrip(server, client, sizes.map((n) => randomBytes(n)));
  });

  it('dialer -> listener: the same', async () => {
    await roundTrip(client, server, sizes.map((n) => randomBytes(n)));
  });

  it('both directions at once', async () => {
    await Promise.all([
      roundTrip(server, client, [randomBytes(5 * MiB), randomBytes(333), randomBytes(2 * MiB)]),
      roundTrip(client, server, [randomBytes(3 * MiB), randomBytes(1), randomBytes(MiB + 17)]),
    ]);
  });

  it('any sequence of chunks (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 2 * MiB + 3 }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        async (lengths, down) => {
          const chunks = lengths.map((n) => randomBytes(n));
          if (down) await roundTrip(server, client, chunks);
          else await roundTrip(client, server, chunks);
        },
      ),
      { numRuns: 12 },
    );
  });

  it('accepts any Uint8Array view (not only Buffers), honouring its offset', async () => {
    const backing = randomBytes(3 * MiB);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 123, 2 * MiB);
    await roundTrip(server, client, [view]);
  });
});
