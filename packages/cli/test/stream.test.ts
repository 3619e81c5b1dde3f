import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { encodeRecord } from '@colo/stream';
import { describe, expect, test } from 'vitest';
import { main } from '../src/main.js';
import { backChannel, checkpointedStream, concat, plainHvmImage } from '../../stream/test/samples.js';

const dir = mkdtempSync(join(tmpdir(), 'colo-stream-cli-'));
function file(name: string, bytes: Uint8Array): string {
  const f = join(dir, name);
  writeFileSync(f, bytes);
  return f;
}

async function colo(argv: string[], stdin?: Uint8Array): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  const input = Readable.from(stdin ? [Buffer.from(stdin)] : []);
  const code = await main(argv, { stdout, stderr, stdin: input });
  return { code, out, err };
}

const plain = file('plain.img', plainHvmImage({ pages: 2100 }));
const checkpointed = file('colo.img', checkpointedStream({ checkpoints: 3 }));
const open = file('open.img', checkpointedStream({ checkpoints: 2, finish: false }));
const back = file('back.bin', backChannel(2));
const badParams = (() => {
  const img = plainHvmImage({ pages: 1 });
  // HVM_PARAMS is the third record before the libxc END; find it by its type/length words and shorten it
  const v = new DataView(img.buffer);
  for (let at = 64; at < img.length; at += 8) {
    if (v.getUint32(at, true) === 0x0a && v.getUint32(at + 4, true) === 40) {
      v.setUint32(at + 4, 36, true);
      return { path: file('bad.img', img), at };
    }
  }
  throw new Error('HVM_PARAMS not found');
})();

describe('colo stream verify', () => {
  test('a plain image: exit 0 and one summary line', async () => {
    const r = await colo(['stream', 'verify', plain]);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(/^valid libxl stream: \d+ bytes, 13 records, 3 PAGE_DATA \(2100 pages\), x86 HVM guest\n$/);
  });

  test('a checkpointed COLO stream (which Xen\'s verifier cannot follow)', async () => {
    const r = await colo(['stream', 'verify', checkpointed]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('3 checkpoints');
  });

  test('a recording that stops after a checkpoint: TRUNCATED, unless --partial', async () => {
    const r = await colo(['stream', 'verify', open]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/STREAM_TRUNCATED at byte \d+/);
    const p = await colo(['stream', 'verify', '--partial', open]);
    expect(p).toMatchObject({ code: 0 });
    expect(p.out).toContain('2 checkpoints');
  });

  test('an invalid stream: exit 1 with code, offset and message', async () => {
    const r = await colo(['stream', 'verify', badParams.path]);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toContain(`STREAM_BAD_LENGTH at byte ${badParams.at}`);
    expect(r.err).toContain('HVM_PARAMS');
  });

  test('standard input, the back channel (auto-detected), and --kind', async () => {
    expect((await colo(['stream', 'verify', '-'], backChannel(2))).out).toMatch(/^valid back-channel stream/);
    expect((await colo(['stream', 'verify', back])).code).toBe(0);
    const forced = await colo(['stream', 'verify', '--kind', 'libxc', plain]);
    expect(forced.code).toBe(1);
    expect(forced.err).toContain('STREAM_BAD_IDENT at byte 0');
  });

  test('--max-record-length refuses a long record before reading it', async () => {
    const r = await colo(['stream', 'verify', '--max-record-length', '64KiB', plain]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('STREAM_RECORD_TOO_LONG');
  });

  test('usage errors exit 2, unreadable input exits 3', async () => {
    expect((await colo(['stream', 'verify'])).code).toBe(2);
    expect((await colo(['stream', 'verify', '--kind', 'zip', plain])).code).toBe(2);
    expect((await colo(['stream', 'verify', '--max-record-length', 'lots', plain])).code).toBe(2);
    expect((await colo(['stream', 'verify', plain, plain])).code).toBe(2);
    const r = await colo(['stream', 'verify', join(dir, 'missing.img')]);
    expect(r.code).toBe(3);
    expect(r.err).toContain('cannot read');
  });

  test('--help documents usage, options and exit codes', async () => {
    const r = await colo(['stream', 'verify', '--help']);
    expect(r.code).toBe(0);
    for (const word of ['Usage: colo stream verify', '--kind', '--max-record-length', '--partial', 'Exit codes']) expect(r.out).toContain(word);
  });
});

describe('colo stream inspect', () => {
  test('squashes PAGE_DATA runs, marks checkpoints, names COLO control ids', async () => {
    const r = await colo(['stream', 'inspect', checkpointed]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('libxl stream (detected)');
    expect(r.out).toMatch(/libxc PAGE_DATA {2}2 records, 46 pfns, 46 pages of data/);
    for (const n of [1, 2, 3]) expect(r.out).toContain(`checkpoint #${n}`);
    expect(r.out).toContain('COLO NEW_CHECKPOINT (0)');
    expect(r.out.trimEnd().split('\n').at(-1)).toMatch(/^valid libxl stream/);
  });

  test('--json: a single object a script can use', async () => {
    const r = await colo(['stream', 'inspect', '--json', back]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({ kind: 'back-channel', valid: true, stats: { records: 8 } });
    expect(j.entries.map((e: { control?: string; what: string }) => e.control ?? e.what)).toEqual([
      'SVM_READY',
      'SVM_SUSPENDED',
      'CHECKPOINT_DIRTY_PFN_LIST',
      'SVM_RESUMED',
      'SVM_SUSPENDED',
      'CHECKPOINT_DIRTY_PFN_LIST',
      'SVM_RESUMED',
      'OPTIONAL',
    ]);
  });

  test('--json on an invalid stream: entries up to the error, and the error', async () => {
    const r = await colo(['stream', 'inspect', '--json', badParams.path]);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out);
    expect(j.valid).toBe(false);
    expect(j.error).toMatchObject({ code: 'STREAM_BAD_LENGTH', offset: badParams.at });
    expect(j.entries.at(-1).what).toBe('HVM_CONTEXT');
  });

  test('text listing of an invalid stream ends with the error, exit 1', async () => {
    const bytes = concat([backChannel(1), encodeRecord({ layer: 'libxc', kind: 'END' })]);
    const r = await colo(['stream', 'inspect', '-'], bytes);
    expect(r.code).toBe(1);
    expect(r.out).toContain('SVM_RESUMED');
    expect(r.err).toContain('STREAM_MISPLACED_RECORD');
  });
});
