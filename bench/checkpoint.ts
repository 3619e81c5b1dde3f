/**
 * Checkpoint benchmarks, against raw TCP loopback throughput measured in the same run:
 * - the pause the primary guest sees (suspend to resume) for 100 / 1,000 / 10,000 / 50,000 dirty pages, p50 and
 *   p99 over repeated checkpoints, in COLO (includes the secondary's suspend report, apply and READY) and Remus
 *   (suspend, send, resume). Target: p99 <= 1.5 x (dirty bytes / raw TCP throughput) + 2 ms.
 * - the initial synchronisation (live migration) of a 1 GiB guest, secondary start to protected.
 *   Target: >= 0.7 of raw TCP throughput.
 * Both nodes run in this process over real ws on loopback, as the two-node tests do.
 *
 * Dirty pages are chosen by the bench: a thin Domain wrapper adds exactly N pfns to what the guest's dirty log
 * returns at each checkpoint, so the checkpoint carries N real pages without the cost of a workload that
 * writes them. Everything else (engine, codec, transport, secondary apply) is the production path.
 *
 * Run: `npx tsx --conditions=@colo/source bench/run.ts checkpoint` (COLO_BENCH_QUICK=1 for a short run).
 */
import { randomBytes } from 'node:crypto';
import { SimulatedGuest, type Domain } from '@colo/domain';
import { ColoNode, unionAscending, type CheckpointMeasurement, type ReplicationMode } from '@colo/coordinator';
import pino from 'pino';
import type { BenchRow, BenchSuite } from './harness.js';
import { GiB, measureRawTcpThroughput } from './transport-baseline.js';

const PAGE = 4096;
const quiet = pino({ level: 'silent' });
const QUICK = process.env.COLO_BENCH_QUICK === '1';

/** A guest whose dirty log also reports the pfns the bench asks for (see the file comment). */
function withInjectedDirty(inner: SimulatedGuest): Domain & { inject(pfns: number[]): void } {
  let injected: number[] = [];
  const d = Object.create(inner) as Domain & { inject(pfns: number[]): void };
  Object.defineProperties(d, {
    state: { get: () => inner.state },
    readAndClearDirty: {
      value: () => {
        const own = inner.readAndClearDirty();
        const all = injected.length ? Uint32Array.from(unionAscending(own, injected)) : own;
        injected = [];
        return all;
      },
    },
    inject: { value: (pfns: number[]) => (injected = pfns) },
  });
  // Methods that use private fields must run on the real guest.
  for (const m of ['suspend', 'resume', 'enableLogDirty', 'disableLogDirty', 'peekDirty', 'page', 'writePages', 'getVcpuContext', 'setVcpuContext', 'getHvmParams', 'setHvmParams', 'getTscInfo', 'setTscInfo', 'getDeviceState', 'setDeviceState', 'getXenstore', 'setXenstore', 'destroy'] as const) {
    Object.defineProperty(d, m, { value: (inner[m] as (...a: unknown[]) => unknown).bind(inner) });
  }
  for (const p of ['uuid', 'name', 'pageCount'] as const) Object.defineProperty(d, p, { get: () => inner[p] });
  return d;
}

async function startPair(mode: ReplicationMode, pages: number, guest: Domain) {
  const psk = randomBytes(32);
  const common = { mode, security: { psk }, logger: quiet, heartbeat: { intervalMs: 100, timeoutMs: 5000 }, timings: { phaseTimeoutMs: 30_000, stallTimeoutMs: 30_000, coloMaxIntervalMs: 3_600_000, remusIntervalMs: 3_600_000 } };
  const primary = new ColoNode({ ...common, nodeId: 'bench-a', role: 'primary', domain: guest, replication: { listen: { host: '127.0.0.1', port: 0 } } });
  await primary.start();
  const secondary = new ColoNode({
    ...common,
    nodeId: 'bench-b',
    role: 'secondary',
    hostGuest: () => new SimulatedGuest({ memoryBytes: pages * PAGE, startSuspended: true }),
    replication: { peer: primary.listenUrl! },
  });
  const t0 = performance.now();
  await secondary.start();
  await new Promise<void>((resolve) => {
    if (primary.status().protected) return resolve();
    primary.on('protected', () => resolve());
  });
  const syncSeconds = (performance.now() - t0) / 1000;
  return {
    primary,
    secondary,
    syncSeconds,
    async stop() {
      await secondary.stop();
      await primary.stop();
      secondary.domain?.destroy();
    },
  };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

const suite: BenchSuite = {
  name: 'checkpoint',
  async run(log) {
    const rows: BenchRow[] = [];
    const tcp = await measureRawTcpThroughput(QUICK ? 256 * 1024 * 1024 : GiB);
    const tcpGBs = tcp.bytesPerSecond / 1e9;
    log(`raw TCP loopback: ${tcpGBs.toFixed(2)} GB/s`);
    rows.push({ name: 'raw TCP loopback throughput (baseline)', value: tcpGBs, unit: 'GB/s' });

    // ---- checkpoint pause by dirty pages
    const guestPages = 65_536; // 256 MiB: room for 50,000 distinct dirty pages
    for (const mode of ['colo', 'remus'] as const) {
      const inner = new SimulatedGuest({ memoryBytes: guestPages * PAGE });
      const guest = withInjectedDirty(inner);
      const pair = await startPair(mode, guestPages, guest);
      for (const n of [100, 1_000, 10_000, 50_000]) {
        const reps = QUICK ? 5 : n >= 50_000 ? 20 : n >= 10_000 ? 40 : 100;
        const pauses: number[] = [];
        for (let i = 0; i < reps + 2; i++) {
          const start = Math.floor(Math.random() * (guestPages - n));
          guest.inject(Array.from({ length: n }, (_, k) => start + k));
          const m: CheckpointMeasurement = await pair.primary.requestCheckpoint('manual');
          if (m.pages < n) throw new Error(`checkpoint carried ${m.pages} pages, expected at least ${n}`);
          if (i >= 2) pauses.push(m.pauseSeconds); // two warm-up checkpoints
        }
        const p50 = percentile(pauses, 50) * 1000;
        const p99 = percentile(pauses, 99) * 1000;
        const ideal = ((n * PAGE) / tcp.bytesPerSecond) * 1000;
        const target = 1.5 * ideal + 2;
        log(`${mode} ${n} pages: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (target ${target.toFixed(2)} ms)`);
        rows.push({ name: `${mode} pause p50, ${n} dirty pages`, value: p50, unit: 'ms', baseline: `raw TCP ${ideal.toFixed(2)} ms`, ratio: p50 / ideal });
        rows.push({
          name: `${mode} pause p99, ${n} dirty pages`,
          value: p99,
          unit: 'ms',
          baseline: `raw TCP ${ideal.toFixed(2)} ms`,
          ratio: p99 / ideal,
          target: `<= 1.5 x raw + 2 ms = ${target.toFixed(2)} ms`,
          met: p99 <= target,
        });
      }
      await pair.stop();
      inner.destroy();
    }

    // ---- initial synchronisation of a 1 GiB guest
    const syncPages = (QUICK ? 256 * 1024 * 1024 : GiB) / PAGE;
    const big = new SimulatedGuest({ memoryBytes: syncPages * PAGE });
    const pair = await startPair('remus', syncPages, big);
    const bytes = syncPages * PAGE;
    const rate = bytes / pair.syncSeconds / 1e9;
    log(`initial sync ${bytes / GiB} GiB: ${pair.syncSeconds.toFixed(2)} s, ${rate.toFixed(2)} GB/s`);
    rows.push({
      name: `initial synchronisation, ${(bytes / GiB).toFixed(2)} GiB guest`,
      value: rate,
      unit: 'GB/s',
      baseline: `raw TCP ${tcpGBs.toFixed(2)} GB/s`,
      ratio: rate / tcpGBs,
      target: '>= 0.7 x raw TCP',
      met: rate / tcpGBs >= 0.7,
    });
    await pair.stop();
    big.destroy();
    return rows;
  },
};

export default suite;
