import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { RotatingLog } from '../src/pair/rotating-log.js';

test('a colo pair node log rotates by size, keeping the newest files, and takes nothing after close', () => {
  const dir = mkdtempSync(join(tmpdir(), 'colo-log-'));
  const file = join(dir, 'node-a.log');
  writeFileSync(file, 'from an earlier run\n');
  const log = new RotatingLog(file, 100, 2);
  const line = (i: number) => Buffer.from(`line ${String(i).padStart(3, '0')} ${'x'.repeat(30)}\n`); // 40 bytes
  for (let i = 0; i < 10; i++) log.write(line(i));
  log.close();
  log.write(line(99));
  // A line that would take the file past 100 bytes starts a new one: two lines a file, the newest in FILE, the two
  // files before it in .1 and .2, the rest (the earlier run's line among them) gone.
  expect(readFileSync(file, 'utf8')).toBe(`${line(8)}${line(9)}`);
  expect(readFileSync(`${file}.1`, 'utf8')).toBe(`${line(6)}${line(7)}`);
  expect(readFileSync(`${file}.2`, 'utf8')).toBe(`${line(4)}${line(5)}`);
  expect(existsSync(`${file}.3`)).toBe(false);
  for (const f of [file, `${file}.1`, `${file}.2`]) expect(statSync(f).size).toBeLessThanOrEqual(100);
  expect(statSync(file).mode & 0o777).toBe(0o600);
});
