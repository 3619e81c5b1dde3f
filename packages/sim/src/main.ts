/**
 * `npm run sim [-- options]`: runs the pair under deterministic simulation.
 *   --seeds N        how many seeds (default 2000), from --from S (default 1)
 *   --hours H        run seeds for H hours instead (unattended: reports every 1,000 seeds)
 *   --seconds T      simulated seconds per seed (default 40)
 *   --seed S         one seed, with its result in full; with --faults '<json>' that schedule instead of the seed's
 *   --mode M         colo or remus for every seed (default: each seed draws one, half and half)
 * Exit code 0 when every invariant held, 1 when a seed failed (each failure printed with its replay command and
 * its shrunk fault schedule), 2 for bad arguments.
 */
import type { ReplicationMode } from '@colo/coordinator';
import { runSeeds } from './seeds.js';
import { runSimulation, type Fault } from './world.js';

function parse(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`);
    out[a.slice(2)] = v;
    i++;
  }
  for (const k of Object.keys(out)) if (!['seeds', 'from', 'hours', 'seconds', 'seed', 'faults', 'mode'].includes(k)) throw new Error(`unknown option --${k}`);
  return out;
}

function number(args: Record<string, string>, name: string, fallback: number): number {
  if (args[name] === undefined) return fallback;
  const n = Number(args[name]);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got '${args[name]}'`);
  return n;
}

async function main(): Promise<number> {
  let args: Record<string, string>;
  let seconds: number;
  let mode: ReplicationMode | undefined;
  try {
    args = parse(process.argv.slice(2));
    seconds = number(args, 'seconds', 40);
    if (args.mode !== undefined && args.mode !== 'colo' && args.mode !== 'remus') throw new Error(`--mode must be colo or remus, got '${args.mode}'`);
    mode = args.mode;
  } catch (e) {
    console.error(`colo sim: ${(e as Error).message}`);
    return 2;
  }
  if (args.seed !== undefined) {
    let faults: Fault[] | undefined;
    try {
      faults = args.faults ? (JSON.parse(args.faults) as Fault[]) : undefined;
    } catch {
      console.error('colo sim: --faults must be a JSON array of faults');
      return 2;
    }
    const started = Date.now();
    const r = await runSimulation({ seed: Number(args.seed), seconds, ...(faults ? { faults } : {}), ...(mode ? { mode } : {}) });
    console.log(JSON.stringify(r, null, 2));
    console.log(`${r.simSeconds} simulated s in ${Date.now() - started} ms: ${r.violations.length === 0 ? 'every invariant held' : 'FAILED'}`);
    return r.violations.length === 0 ? 0 : 1;
  }
  const hours = args.hours !== undefined ? number(args, 'hours', 1) : undefined;
  const summary = await runSeeds({
    from: number(args, 'from', 1),
    seconds,
    ...(mode ? { mode } : {}),
    ...(hours !== undefined ? { wallMs: hours * 3_600_000 } : { count: number(args, 'seeds', 2000) }),
    onResult: (r) => {
      if (r.violations.length > 0) console.log(`seed ${r.seed}: FAILED\n  ${r.violations.join('\n  ')}`);
      else if (r.seed % 1000 === 0) console.log(`seed ${r.seed}: ok`);
    },
  });
  const rate = summary.simSeconds / (summary.wallMs / 1000);
  console.log(
    `${summary.seeds} seeds (${summary.coloSeeds} COLO), ${Math.round(summary.simSeconds)} simulated s in ${(summary.wallMs / 1000).toFixed(1)} s (${rate.toFixed(0)} simulated s per wall s); ` +
      `${summary.acknowledged} writes acknowledged, ${summary.failovers} failovers, ${summary.checkpoints} checkpoints, ${summary.pairsLost} pairs lost to a double fault; ${summary.failures.length} failed`,
  );
  for (const f of summary.failures) {
    console.log(`\nseed ${f.seed} failed:\n  ${f.violations.join('\n  ')}\n  faults: ${JSON.stringify(f.faults)}\n  shrunk: ${JSON.stringify(f.shrunk)}\n  replay: ${f.replay}`);
  }
  return summary.failures.length === 0 ? 0 : 1;
}

process.exitCode = await main();
