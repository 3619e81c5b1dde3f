import { StreamDecoder, type StreamItem } from '@colo/stream';
import { describe, expect, test } from 'vitest';
import { encodeRecord } from '@colo/stream';
import { checkpointedStream, plainHvmImage } from './samples.js';

/** Feeds a stream item by item (one whole item per push) and records the decoder's state after each. */
function trace(bytes: Uint8Array) {
  const d = new StreamDecoder({ kind: 'libxl' });
  const all = d.push(bytes);
  const steps: { what: string; layer: string; inCheckpoint: boolean; done: boolean }[] = [];
  const d2 = new StreamDecoder({ kind: 'libxl' });
  const ends = all.map((_, i) => (i + 1 < all.length ? all[i + 1]!.offset : bytes.length));
  let at = 0;
  all.forEach((item: StreamItem, i) => {
    const got = d2.push(bytes.subarray(at, ends[i]));
    at = ends[i]!;
    expect(got).toHaveLength(1);
    steps.push({ what: item.item === 'record' ? `${item.record.layer}:${item.record.kind}` : item.item, layer: d2.layer, inCheckpoint: d2.inCheckpoint, done: d2.done });
  });
  return { steps, decoder: d2 };
}

describe('layer tracking', () => {
  test('plain image: libxl, libxc after LIBXC_CONTEXT, libxl again after libxc END, done after libxl END', () => {
    const { steps } = trace(plainHvmImage({ pages: 2 }));
    const at = (what: string) => steps.find((s) => s.what === what)!;
    expect(at('libxl-header')).toMatchObject({ layer: 'libxl' });
    expect(at('libxl:LIBXC_CONTEXT')).toMatchObject({ layer: 'libxc' });
    expect(at('libxc:PAGE_DATA')).toMatchObject({ layer: 'libxc', inCheckpoint: false });
    expect(at('libxc:END')).toMatchObject({ layer: 'libxl', done: false });
    expect(at('libxl:END')).toMatchObject({ layer: 'libxl', done: true });
    expect(steps.every((s) => !s.inCheckpoint)).toBe(true);
  });

  test('checkpointed stream: CHECKPOINT hands the channel to libxl until CHECKPOINT_END, with no new libxc headers', () => {
    const { steps, decoder } = trace(checkpointedStream({ checkpoints: 2 }));
    const seq = steps.map((s) => `${s.what}@${s.layer}${s.inCheckpoint ? '+cp' : ''}`);
    const first = seq.indexOf('libxc:CHECKPOINT@libxl+cp');
    expect(first).toBeGreaterThan(0);
    expect(seq.slice(first, first + 5)).toEqual([
      'libxc:CHECKPOINT@libxl+cp',
      'libxl:EMULATOR_XENSTORE_DATA@libxl+cp',
      'libxl:EMULATOR_CONTEXT@libxl+cp',
      'libxl:CHECKPOINT_END@libxc',
      'libxl:CHECKPOINT_STATE@libxc',
    ]);
    expect(seq.filter((s) => s.startsWith('libxc-image-header'))).toHaveLength(1);
    expect(decoder.checkpoints).toBe(2);
    expect(decoder.done).toBe(true);
  });

  test('offset counts consumed bytes; bytes of an incomplete record wait in the buffer', () => {
    const img = plainHvmImage({ pages: 1 });
    const d = new StreamDecoder({ kind: 'libxl' });
    d.push(img.subarray(0, 70));
    expect(d.offset).toBe(64);
    expect(d.buffered).toBe(6);
    d.push(img.subarray(70));
    expect(d.offset).toBe(img.length);
    expect(d.end()).toEqual([]);
  });

  test('back channel records keep their layer: CHECKPOINT_STATE is libxl, the dirty pfn list libxc', () => {
    const d = new StreamDecoder({ kind: 'back-channel' });
    const items = d.push(
      new Uint8Array([
        ...encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 1 }),
        ...encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: [5] }),
      ]),
    );
    expect(items.map((i) => i.item === 'record' && `${i.record.layer}:${i.record.kind}`)).toEqual(['libxl:CHECKPOINT_STATE', 'libxc:CHECKPOINT_DIRTY_PFN_LIST']);
    expect(d.done).toBe(false);
  });
});
