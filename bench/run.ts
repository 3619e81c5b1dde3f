/**
 * `npm run bench [suite ...]`: runs the benchmark suites (all, or those named) and prints a markdown table per
 * suite. Figures go into docs/performance.md by hand, with the machine they were measured on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatRows, type BenchSuite } from './harness.js';

// One temporary root for the whole run (pairs' folders, sockets, QEMU monitors), removed when the run ends.
const scratch = mkdtempSync(join(tmpdir(), 'colo-bench-'));
process.env.TMPDIR = scratch;
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
process.once('SIGINT', () => process.exit(130));

const suites: Record<string, () => Promise<BenchSuite>> = {
  stream: async () => (await import('./stream.js')).default,
  guest: async () => (await import('./guest.js')).default,
  checkpoint: async () => (await import('./checkpoint.js')).default,
  transport: async () => (await import('./transport-baseline.js')).default,
  pair: async () => (await import('./pair.js')).default,
  failover: async () => (await import('./failover.js')).default,
  qemu: async () => (await import('./qemu.js')).default,
  compression: async () => (await import('./compression.js')).default,
};

const wanted = process.argv.slice(2);
const names = wanted.length > 0 ? wanted : Object.keys(suites);
let failed = false;
for (const name of names) {
  const load = suites[name];
  if (!load) {
    console.error(`unknown suite '${name}'; known: ${Object.keys(suites).join(', ')}`);
    process.exit(2);
  }
  const suite = await load();
  console.log(`\n## ${suite.name}\n`);
  const rows = await suite.run((line) => console.log(`  ${line}`));
  console.log(formatRows(rows));
  if (rows.some((r) => r.met === false)) failed = true;
}
if (failed) console.log('\nSome targets were not met in this run (see the "met" column).');
