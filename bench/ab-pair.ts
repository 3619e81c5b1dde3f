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
import { resolve } from 'node:path';
import { NODE_HEAP_FLAGS } from '../packages/cli/src/runtime/node-flags.js';
import { median } from './harness.js';
import { combine, redisBenchmark, startGuest, startPair } from './pair.js';

/** Ports 23000..23099 (bench pair uses 22800..22899, the e2e tests 22000..22599). */
const OLD_PORT = 23000;
const NEW_PORT = 23020;
const GUEST_PORT = 23090;

/** Mean requests/s of SET, GET and INCR. */
function meanRps(port: number, requests: number): number {
  return combine(redisBenchmark(port, 'set,get,incr', requests)).rps;
}

const [oldBin, newBin, roundsArg] = process.argv.slice(2);
if (!oldBin || !newBin) {
  console.error('usage: bench/ab-pair.ts OLD_BIN NEW_BIN [rounds]');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 10);
const oldFlags = process.env.OLD_FLAGS?.split(' ').filter(Boolean) ?? [];
const guest = await startGuest(GUEST_PORT, resolve(newBin));
const oldPair = await startPair(OLD_PORT, 'colo', {}, [process.execPath, ...oldFlags, resolve(oldBin)]);
const newPair = await startPair(NEW_PORT, 'colo', {}, [process.execPath, ...NODE_HEAP_FLAGS, resolve(newBin)]);
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
  await oldPair.sup.stop();
  await newPair.sup.stop();
}
