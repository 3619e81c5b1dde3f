import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { main } from '@colo/cli';
import { decodeAll } from '@colo/stream';
import { tool } from '../../../test/support/tools.js';

/** Runs `colo ARGS` in this process with captured output. */
async function colo(...argv: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  const code = await main(argv, { stdout, stderr, stdin: new PassThrough() });
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'colo-cli-guest-'));

describe('colo guest, save and restore: help and usage', () => {
  it('documents options, defaults and exit codes', async () => {
    const guest = await colo('guest', '--help');
    expect(guest.code).toBe(0);
    for (const s of ['--listen', '--memory', 'Default 256MiB', '--dirty-rate', 'Default 0', '--control', 'GET /image', 'Exit codes']) expect(guest.out).toContain(s);
    const save = await colo('save', '--help');
    for (const s of ['--from', '-o', '--memory', 'Exit codes']) expect(save.out).toContain(s);
    const restore = await colo('restore', '--help');
    for (const s of ['--listen', 'STREAM_TRUNCATED', 'Exit codes']) expect(restore.out).toContain(s);
  });

  it('refuses bad usage with exit 2', async () => {
    expect((await colo('guest')).code).toBe(2);
    expect((await colo('guest', '--listen', 'nowhere')).err).toContain('--listen must be HOST:PORT');
    expect((await colo('guest', '--listen', '127.0.0.1:0', '--memory', '1000')).code).toBe(2);
    expect((await colo('guest', '--listen', '127.0.0.1:0', '--dirty-rate', '-5')).code).toBe(2);
    expect((await colo('save')).err).toContain('-o FILE is required');
    expect((await colo('save', '-o', join(dir, 'x'), '--from', 'http://127.0.0.1:1', '--memory', '1MiB')).code).toBe(2);
    expect((await colo('restore', '--listen', '127.0.0.1:0')).code).toBe(2);
  });
});

describe('colo save', () => {
  it('writes an image of a fresh guest that Xen’s verifier accepts', async () => {
    const file = join(dir, 'fresh.img');
    const r = await colo('save', '--memory', '1MiB', '--name', 'fresh', '-o', file);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`saved ${readFileSync(file).length} bytes`);
    const pages = decodeAll(readFileSync(file), { kind: 'libxl' }).filter((i) => i.item === 'record' && i.record.kind === 'PAGE_DATA');
    expect(pages).toHaveLength(1); // 256 pages in one batch
    const v = spawnSync('python3', [tool('XEN_VERIFY'), '-f', 'libxl', '-i', file], { env: { ...process.env, PYTHONPATH: tool('XEN_PYTHONPATH') }, encoding: 'utf8' });
    expect(v.stderr).toBe('');
    expect(v.status).toBe(0);
  });

  it('exits 3 when the guest’s control API cannot be reached, leaving no file', async () => {
    const file = join(dir, 'unreachable.img');
    const r = await colo('save', '--from', 'http://127.0.0.1:1', '-o', file);
    expect(r.code).toBe(3);
    expect(r.err).toContain('cannot fetch the image');
    expect(existsSync(file)).toBe(false);
    expect(existsSync(`${file}.partial`)).toBe(false);
  });
});

describe('colo restore', () => {
  it('refuses a truncated or corrupt image with exit 1 and the error code, and a missing file with exit 3', async () => {
    const good = join(dir, 'good.img');
    expect((await colo('save', '--memory', '256KiB', '-o', good)).code).toBe(0);
    const bytes = readFileSync(good);
    const truncated = join(dir, 'truncated.img');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 100));
    const t = await colo('restore', truncated, '--listen', '127.0.0.1:0');
    expect(t.code).toBe(1);
    expect(t.err).toContain('STREAM_TRUNCATED');
    const corrupt = join(dir, 'corrupt.img');
    const c = Buffer.from(bytes);
    c[3] ^= 1;
    writeFileSync(corrupt, c);
    const cr = await colo('restore', corrupt, '--listen', '127.0.0.1:0');
    expect(cr.code).toBe(1);
    expect(cr.err).toContain('STREAM_BAD_IDENT');
    const missing = await colo('restore', join(dir, 'missing.img'), '--listen', '127.0.0.1:0');
    expect(missing.code).toBe(3);
    expect(missing.err).toContain('ENOENT');
  });
});
