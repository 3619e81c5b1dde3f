/**
 * Two builds' COLO pairs against one unprotected guest, interleaved: for judging a change to the client path on
 * a machine whose speed drifts (a ratio of two runs minutes apart measures the drift). One guest, the old
 * build's pair and the new build's pair run at once; each round runs redis-benchmark (SET/GET/INCR, 30,000
 * requests, 50 clients) on the three in rotating order; per round, each pair's ratio to the guest and new / old;
 * medians at the end.
 *
 * Usage (after `npx turbo run build` in both trees and `npm run tools`):
 *   git worktree add /tmp/old <rev> && (cd /tmp/old && npm ci && npx turbo run build)
 *   npx tsx --conditions=@colo/source bench/ab-pair.ts /tmp/old/packages/cli/dist/bin.js packages/cli/dist/bin.js [rounds]
 * The new build's nodes (and the guest) run with NODE_HEAP_FLAGS; the old build's as its own supervisor would
 * have started them (pass OLD_FLAGS='--flag ...' to give them flags).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { PairSupervisor } from '../packages/cli/src/pair/supervisor.js';
import { NODE_HEAP_FLAGS } from '../packages/cli/src/runtime/node-flags.js';
import { tool } from './pair.js';

/** Ports 23000..23099 (bench pair uses 22800..22899, the e2e tests 22000..22599). */
const OLD_PORT = 23000;
const NEW_PORT = 23020;
const GUEST_PORT = 23090;

function meanRps(port: number, requests: number): number {
  const r = spawnSync(tool('REDIS_BENCHMARK'), ['-h', '127.0.0.1', '-p', String(port), '-t', 'set,get,incr', '-n', String(requests), '--csv'], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`redis-benchmark failed (${r.status}): ${r.stderr}`);
  const rps = r.stdout
    .split('\n')
    .map((l) => l.split(',').map((x) => x.replace(/"/g, '')))
    .filter((f) => f.length >= 7 && /^[A-Z]+$/.test(f[0]!))
    .map((f) => Number(f[1]));
  if (rps.length !== 3) throw new Error(`redis-benchmark printed ${rps.length} results, expected 3: ${r.stdout}`);
  return rps.reduce((a, b) => a + b, 0) / rps.length;
}

async function startPair(base: number, coloCommand: string[]): Promise<PairSupervisor> {
  const sup = new PairSupervisor({ dir: mkdtempSync(join(tmpdir(), 'colo-ab-')), mode: 'colo', memory: '16MiB', host: '127.0.0.1', servicePort: base, adminPort: base + 2, replicationPort: base + 4, dirtyRate: 0, extra: {}, logLevel: 'warn', coloCommand });
  sup.start();
  const deadline = Date.now() + 60_000;
  while (!(await getStatus(`http://127.0.0.1:${base + 2}`, 1000).catch(() => undefined))?.protected) {
    if (Date.now() > deadline) throw new Error(`the pair on port ${base} was not protected within 60 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return sup;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const [oldBin, newBin, roundsArg] = process.argv.slice(2);
if (!oldBin || !newBin) {
  console.error('usage: bench/ab-pair.ts OLD_BIN NEW_BIN [rounds]');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 10);
const oldFlags = process.env.OLD_FLAGS?.split(' ').filter(Boolean) ?? [];
const guest = spawn(process.execPath, [...NODE_HEAP_FLAGS, resolve(newBin), 'guest', '--listen', `127.0.0.1:${GUEST_PORT}`, '--memory', '16MiB'], { stdio: 'ignore' });
const oldPair = await startPair(OLD_PORT, [process.execPath, ...oldFlags, resolve(oldBin)]);
const newPair = await startPair(NEW_PORT, [process.execPath, ...NODE_HEAP_FLAGS, resolve(newBin)]);
try {
  const targets: [string, number][] = [['guest', GUEST_PORT], ['old', OLD_PORT], ['new', NEW_PORT]];
  for (const [, port] of targets) meanRps(port, 3000); // warm-up
  const oldRatio: number[] = [];
  const newRatio: number[] = [];
  const newOverOld: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = [...targets.slice(r % 3), ...targets.slice(0, r % 3)];
    const rps: Record<string, number> = {};
    for (const [name, port] of order) rps[name] = meanRps(port, 30_000);
    oldRatio.push(rps.old! / rps.guest!);
    newRatio.push(rps.new! / rps.guest!);
    newOverOld.push(rps.new! / rps.old!);
    console.log(`round ${r} (${order.map((o) => o[0]).join(', ')}): guest ${rps.guest!.toFixed(0)}, old ${rps.old!.toFixed(0)}, new ${rps.new!.toFixed(0)} ops/s; old/guest ${oldRatio.at(-1)!.toFixed(2)}, new/guest ${newRatio.at(-1)!.toFixed(2)}, new/old ${newOverOld.at(-1)!.toFixed(2)}`);
  }
  console.log(`medians: old/guest ${median(oldRatio).toFixed(3)}, new/guest ${median(newRatio).toFixed(3)}, new/old ${median(newOverOld).toFixed(3)} (new ahead in ${newOverOld.filter((x) => x > 1).length} of ${rounds})`);
} finally {
  guest.kill('SIGTERM');
  await oldPair.stop();
  await newPair.stop();
}
