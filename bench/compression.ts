/**
 * Page deltas (replication.compression) as the seed's Remus options issue measures them: redis-benchmark SET
 * (16 clients, 64-byte values, random keys; 8 commands pipelined per client, so that a checkpoint every 50 ms
 * carries a few hundred writes, not the 16 one reply per client per checkpoint allows) through a Remus pair of `colo node` processes on the simulated guest
 * (256 MiB), with compression on and off, at loopback speed and under replication.max_bandwidth 125MB (1 Gbit/s).
 * Per run, from the primary's /metrics before and after: replication bytes per checkpoint, pages per checkpoint,
 * the share sent as deltas, the mean pause (colo_checkpoint_duration_seconds sum / count) and the primary
 * process's CPU per checkpoint (/proc). Baseline: the same run with compression off.
 * Targets: at least 4 x fewer bytes per checkpoint with compression; under 1 Gbit/s the pause at most 0.5 x the
 * uncompressed one; at loopback speed at most 1.1 x.
 *
 * Needs a build and the tools. Run alone: `npx tsx --conditions=@colo/source bench/run.ts compression`.
 */
import { spawnSync } from 'node:child_process';
import { type BenchRow, type BenchSuite } from './harness.js';
import { processCpuSeconds, startPair, tool } from './pair.js';

/** Ports 23300.. (failover 23100.., qemu 23200.., ab-pair 23000.., pair 22800..). */
const BASE = 23300;
const REQUESTS = Number(process.env.COLO_BENCH_COMPRESSION_REQUESTS ?? 20_000);
const INTERVAL = '50ms';

interface Sample {
  bytes: number;
  pages: number;
  deltaPages: number;
  pauseSum: number;
  checkpoints: number;
  cpuSeconds: number;
}

function metric(text: string, re: RegExp): number {
  let sum = 0;
  for (const m of text.matchAll(re)) sum += Number(m[m.length - 1]);
  return sum;
}

async function sample(adminPort: number, pid: number): Promise<Sample> {
  // A fresh connection each time: redis-benchmark (spawnSync) blocks this process longer than the node's
  // keep-alive, and a pooled connection would be one the node has closed.
  const get = () => fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { connection: 'close' } });
  const text = await (await get().catch(get)).text();
  return {
    bytes: metric(text, /^colo_checkpoint_bytes_sum(\{[^}]*\})? ([\d.e+]+)$/gm),
    pages: metric(text, /^colo_checkpoint_pages_sum(\{[^}]*\})? ([\d.e+]+)$/gm),
    deltaPages: metric(text, /^colo_checkpoint_delta_pages_total(\{[^}]*\})? ([\d.e+]+)$/gm),
    pauseSum: metric(text, /^colo_checkpoint_duration_seconds_sum\{reason="periodic"\} ([\d.e+]+)$/gm),
    checkpoints: metric(text, /^colo_checkpoint_duration_seconds_count\{reason="periodic"\} ([\d.e+]+)$/gm),
    cpuSeconds: processCpuSeconds(pid),
  };
}

interface Run {
  bytesPerCheckpoint: number;
  pagesPerCheckpoint: number;
  deltaShare: number;
  pauseMs: number;
  cpuMsPerCheckpoint: number;
  rps: number;
}

async function run(base: number, compression: boolean, maxBandwidth: string | undefined, log: (l: string) => void): Promise<Run> {
  const extra: Record<string, unknown> = { checkpoint: { remus_interval: INTERVAL }, replication: { compression, ...(maxBandwidth ? { max_bandwidth: maxBandwidth } : {}) } };
  const { sup, port } = await startPair(base, 'remus', extra, undefined, { memory: '256MiB', protectMs: 120_000 });
  try {
    const primary = sup.nodes[0]!;
    const adminPort = Number(new URL(primary.adminUrl).port);
    const before = await sample(adminPort, primary.process!.pid!);
    const r = spawnSync(tool('REDIS_BENCHMARK'), ['-h', '127.0.0.1', '-p', String(port), '-t', 'set', '-n', String(REQUESTS), '-c', '16', '-P', '8', '-d', '64', '-r', '100000', '--csv'], { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0) throw new Error(`redis-benchmark failed (${r.status}): ${r.stderr}`);
    const after = await sample(adminPort, primary.process!.pid!);
    const line = r.stdout.split('\n').find((l) => l.startsWith('"SET"'));
    const rps = Number(line?.split(',')[1]?.replace(/"/g, ''));
    const n = after.checkpoints - before.checkpoints;
    if (n <= 0) throw new Error('no periodic checkpoint during the run');
    const out: Run = {
      bytesPerCheckpoint: (after.bytes - before.bytes) / n,
      pagesPerCheckpoint: (after.pages - before.pages) / n,
      deltaShare: (after.deltaPages - before.deltaPages) / Math.max(1, after.pages - before.pages),
      pauseMs: ((after.pauseSum - before.pauseSum) / n) * 1000,
      cpuMsPerCheckpoint: ((after.cpuSeconds - before.cpuSeconds) / n) * 1000,
      rps,
    };
    log(
      `compression ${compression ? 'on ' : 'off'}${maxBandwidth ? `, max_bandwidth ${maxBandwidth}` : ', loopback'}: ${n} checkpoints, ${out.pagesPerCheckpoint.toFixed(0)} pages (${(out.deltaShare * 100).toFixed(0)} % as deltas), ` +
        `${(out.bytesPerCheckpoint / 1024).toFixed(1)} KiB, mean pause ${out.pauseMs.toFixed(2)} ms, primary CPU ${out.cpuMsPerCheckpoint.toFixed(2)} ms per checkpoint; ${rps.toFixed(0)} SET/s`,
    );
    return out;
  } finally {
    await sup.stop();
  }
}

const suite: BenchSuite = {
  name: `compression: page deltas under redis-benchmark SET (16 clients, -P 8, 64-byte values) through a Remus pair (every ${INTERVAL}, 256 MiB simulated guest)`,
  async run(log) {
    const rows: BenchRow[] = [];
    for (const [i, bw] of [undefined, '125MB'].entries()) {
      const off = await run(BASE + i * 10, false, bw, log);
      const on = await run(BASE + i * 10, true, bw, log);
      const where = bw ? 'at 1 Gbit/s (max_bandwidth 125MB)' : 'at loopback speed';
      if (!bw) {
        rows.push({
          name: `replication bytes per checkpoint with compression (${on.pagesPerCheckpoint.toFixed(0)} pages, ${(on.deltaShare * 100).toFixed(0)} % as deltas)`,
          value: on.bytesPerCheckpoint / 1024,
          unit: 'KiB',
          baseline: `without ${(off.bytesPerCheckpoint / 1024).toFixed(1)} KiB`,
          ratio: off.bytesPerCheckpoint / on.bytesPerCheckpoint,
          target: '>= 4 x fewer bytes',
          met: off.bytesPerCheckpoint / on.bytesPerCheckpoint >= 4,
        });
      }
      const limit = bw ? 0.5 : 1.1;
      rows.push({
        name: `mean pause per checkpoint with compression, ${where} (primary CPU ${on.cpuMsPerCheckpoint.toFixed(2)} ms per checkpoint, ${off.cpuMsPerCheckpoint.toFixed(2)} without)`,
        value: on.pauseMs,
        unit: 'ms',
        baseline: `without ${off.pauseMs.toFixed(2)} ms`,
        ratio: on.pauseMs / off.pauseMs,
        target: `<= ${limit} x`,
        met: on.pauseMs <= limit * off.pauseMs,
      });
    }
    return rows;
  },
};

export default suite;
