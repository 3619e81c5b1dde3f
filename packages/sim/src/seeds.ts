import type { ReplicationMode } from '@colo/coordinator';
import { modeFor, runSimulation, type Fault, type RunResult } from './world.js';

export interface SeedsOptions {
  /** The first seed (default 1). */
  from?: number;
  /** How many seeds (default: until `wallMs` runs out). */
  count?: number;
  /** Stop starting seeds after this much wall time (default: no limit). */
  wallMs?: number;
  /** Simulated seconds per seed. */
  seconds?: number;
  /** Every seed in this mode (default: each seed's own, modeFor). */
  mode?: ReplicationMode;
  /** Shrink the fault schedule of a failing seed (default true). */
  shrink?: boolean;
  /** Called after each seed. */
  onResult?: (r: RunResult) => void;
}

export interface Failure {
  seed: number;
  violations: string[];
  faults: Fault[];
  /** The smallest schedule found that still fails (faults dropped, durations shortened). */
  shrunk: Fault[];
  /** The command that replays the shrunk schedule. */
  replay: string;
}

export interface SeedsSummary {
  seeds: number;
  simSeconds: number;
  wallMs: number;
  acknowledged: number;
  failovers: number;
  checkpoints: number;
  /** Seeds that ran in COLO mode (the others in Remus). */
  coloSeeds: number;
  /** Seeds whose faults killed the node that had won the epoch to act alone (safe: nobody serves; see RunResult). */
  pairsLost: number;
  failures: Failure[];
}

/** The command that replays `faults` on `seed` (what a failure prints). */
export function replayCommand(seed: number, seconds: number, faults: readonly Fault[], mode: ReplicationMode = modeFor(seed)): string {
  return `npm run sim -- --seed ${seed} --mode ${mode} --seconds ${seconds} --faults '${JSON.stringify(faults)}'`;
}

/**
 * Drops faults one at a time, and then halves durations, as long as the run still fails: what is left is a
 * schedule a person can read. Every attempt is a full run of the same seed.
 */
export async function shrink(seed: number, seconds: number, faults: readonly Fault[], mode: ReplicationMode = modeFor(seed)): Promise<Fault[]> {
  const fails = async (f: readonly Fault[]) => (await runSimulation({ seed, seconds, faults: f, mode })).violations.length > 0;
  let current = [...faults];
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = 0; i < current.length; i++) {
      const without = current.filter((_, j) => j !== i);
      if (await fails(without)) {
        current = without;
        changed = true;
        break;
      }
    }
  }
  for (let i = 0; i < current.length; i++) {
    for (let tries = 0; tries < 6 && current[i]!.durationMs > 50; tries++) {
      const shorter = current.map((f, j) => (j === i ? { ...f, durationMs: Math.round(f.durationMs / 2) } : f));
      if (!(await fails(shorter))) break;
      current = shorter;
    }
  }
  return current;
}

/** Runs seeds one after another; a failing seed is shrunk and reported with the command that replays it. */
export async function runSeeds(opts: SeedsOptions = {}): Promise<SeedsSummary> {
  const from = opts.from ?? 1;
  const seconds = opts.seconds ?? 40;
  const started = Date.now();
  const summary: SeedsSummary = { seeds: 0, simSeconds: 0, wallMs: 0, acknowledged: 0, failovers: 0, checkpoints: 0, coloSeeds: 0, pairsLost: 0, failures: [] };
  for (let seed = from; ; seed++) {
    if (opts.count !== undefined && seed >= from + opts.count) break;
    if (opts.wallMs !== undefined && Date.now() - started >= opts.wallMs) break;
    const r = await runSimulation({ seed, seconds, ...(opts.mode ? { mode: opts.mode } : {}) });
    summary.seeds++;
    summary.simSeconds += r.simSeconds;
    summary.acknowledged += r.acknowledged;
    summary.failovers += r.failovers;
    summary.checkpoints += r.checkpoints;
    if (r.pairLost) summary.pairsLost++;
    if (r.mode === 'colo') summary.coloSeeds++;
    opts.onResult?.(r);
    if (r.violations.length > 0) {
      const shrunk = opts.shrink === false ? r.faults : await shrink(seed, seconds, r.faults, r.mode);
      summary.failures.push({ seed, violations: r.violations, faults: r.faults, shrunk, replay: replayCommand(seed, seconds, shrunk, r.mode) });
    }
  }
  summary.wallMs = Date.now() - started;
  return summary;
}
