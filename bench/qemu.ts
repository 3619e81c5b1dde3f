/**
 * Checkpoints of a real QEMU guest (Debian's kernel, busybox and redis-server inside; TCG here: KVM does not run
 * on these nested machines), taken from outside as QemuDomain takes them: QMP stop, find the pages that changed
 * in the RAM file (three ways, see Way), save the device state, QMP cont. For 128 MiB and 256 MiB guests, idle
 * and while a client writes to redis, ROUNDS checkpoints each; the pause and its parts as medians. The baseline,
 * measured in the same run on the same RAM, is a memcpy of the guest's RAM size: the least any copy of the memory
 * costs. Then redis-benchmark through a protected pair against the unprotected VM, and the RTO.
 *
 * Needs the tools (`npm run tools`: QEMU and the guest). Run alone: `npx tsx --conditions=@colo/source bench/run.ts qemu`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { changedPages, defaultScanThreads, QemuMachine, RamMirror, readGuestRam, saveDeviceState, tcpProbe } from '@colo/qemu';
import { RespClient } from '../packages/cli/src/client/resp-client.js';
import { median, type BenchRow, type BenchSuite } from './harness.js';
import { combine, redisBenchmark, startPair, tool } from './pair.js';

const ROUNDS = Number(process.env.COLO_BENCH_QEMU_ROUNDS ?? 15);
/** Takeovers measured on the protected pair (COLO_BENCH_QEMU_KILLS). */
const KILLS = Number(process.env.COLO_BENCH_QEMU_KILLS ?? 3);
/**
 * Ports 23200.. (failover 23100.., ab-pair 23000.., pair 22800..): the bare machines 23201/23202, the pair's
 * service/admin/replication 23210..23215 and its guests' forwards 23220/23221, the unprotected VM 23230.
 */
const PORT = 23200;
/**
 * redis-benchmark's clients, for the VM and the pair alike: QEMU's user networking leaves part of a burst of 50
 * connects hanging (colo's QemuDomain connects a few at a time; redis-benchmark straight to the VM cannot).
 */
const CLIENTS = 16;
/** The pair's checkpoint interval: as the QEMU pair's e2e test runs it. */
const INTERVAL = '50ms';


interface Parts {
  pause: number;
  /** Finding the changed pages (reading the RAM included). */
  scan: number;
  device: number;
  pages: number;
}

/**
 * The ways of finding what changed, each measured the same way:
 * - 'copies': read the RAM file into a second copy, compare the two copies page by page (what QemuDomain did first);
 * - 'mirror': RamMirror on this thread: the file read in cache-sized chunks, compared with the mirror, changed
 *   pages copied into it (memory read once);
 * - 'workers': RamMirror split across worker threads, with QEMU's device-state save at the same time (what
 *   QemuDomain does now).
 */
type Way = 'copies' | 'mirror' | 'workers';

async function checkpoints(m: QemuMachine, dir: string, rounds: number, way: Way): Promise<Parts[]> {
  let previous = readGuestRam(m);
  let spare = Buffer.allocUnsafe(m.memoryBytes);
  const mirror = new RamMirror(m.memoryBytes, { threads: way === 'workers' ? undefined : 1 });
  mirror.load(m.ramPath);
  const out: Parts[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      await m.pause();
      const t1 = performance.now();
      let dirty: Uint32Array;
      let t2: number;
      let t3: number;
      if (way === 'workers') {
        let scanned = 0;
        const [d] = await Promise.all([mirror.scan(m.ramPath).then((x) => ((scanned = performance.now()), x)), saveDeviceState(m, dir)]);
        dirty = d;
        t2 = scanned;
        t3 = performance.now();
      } else {
        if (way === 'copies') {
          const current = readGuestRam(m, spare);
          dirty = changedPages(previous, current);
          spare = previous;
          previous = current;
        } else dirty = mirror.scanSync(m.ramPath, true);
        t2 = performance.now();
        await saveDeviceState(m, dir);
        t3 = performance.now();
      }
      await m.resume();
      const t4 = performance.now();
      out.push({ pause: t4 - t0, scan: t2 - t1, device: t3 - t2, pages: dirty.length });
    }
  } finally {
    mirror.close();
  }
  return out;
}

/** A client writing to redis in the guest until stopped (SET of 1 KiB values over 1,000 keys). */
function writer(port: number): { stop: () => Promise<number> } {
  let stopping = false;
  let n = 0;
  const run = (async () => {
    const c = await RespClient.connect('127.0.0.1', port, 5000);
    try {
      while (!stopping) {
        await c.command('SET', `k${n % 1000}`, 'x'.repeat(1024));
        n++;
      }
    } finally {
      c.close();
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await run;
      return n;
    },
  };
}

const suite: BenchSuite = {
  name: 'qemu: a real QEMU guest (TCG): pause by guest size, throughput through protection, RTO',
  async run(log) {
    const rows: BenchRow[] = [];
    const dir = mkdtempSync(join(tmpdir(), 'colo-bench-qemu-'));
    try {
      for (const mib of [128, 256]) {
        const m = new QemuMachine({
          kernel: tool('GUEST_KERNEL'),
          initrd: tool('GUEST_INITRD'),
          qemuBinary: tool('QEMU'),
          memoryBytes: mib * 1024 * 1024,
          accel: 'tcg',
          forward: { hostPort: PORT + mib / 128, guestPort: 6379 },
        });
        try {
          await m.start();
          await m.waitForService(tcpProbe('PING\r\n', '+PONG'), 120_000);
          // The baseline: one memcpy of the guest's RAM size, on the same RAM bytes, in this run.
          const src = readGuestRam(m);
          const dst = Buffer.allocUnsafe(src.length);
          src.copy(dst);
          const copies: number[] = [];
          for (let i = 0; i < 5; i++) {
            const t = performance.now();
            src.copy(dst);
            copies.push(performance.now() - t);
          }
          const memcpy = median(copies);
          const med = (xs: Parts[], k: keyof Parts) => median(xs.map((x) => x[k]));
          const row = (name: string, xs: Parts[], alongside = false) =>
            rows.push({
              name: `${mib} MiB, ${name}: pause (scan ${med(xs, 'scan').toFixed(0)} ms ${alongside ? 'with the device state alongside' : `+ device ${med(xs, 'device').toFixed(0)} ms`}; ${med(xs, 'pages')} pages)`,
              value: med(xs, 'pause'),
              unit: 'ms',
              baseline: `memcpy of ${mib} MiB ${memcpy.toFixed(1)} ms`,
              ratio: med(xs, 'pause') / memcpy,
            });
          const labels: Record<Way, string> = { copies: 'two copies compared', mirror: 'mirror, 1 thread', workers: `mirror, ${defaultScanThreads()} threads + device state at once` };
          for (const way of ['copies', 'mirror', 'workers'] as const) {
            const idle = await checkpoints(m, dir, ROUNDS, way);
            row(`idle, ${labels[way]}`, idle, way === 'workers');
          }
          const w = writer(m.forward.port);
          await new Promise((r) => setTimeout(r, 300));
          for (const way of ['copies', 'workers'] as const) row(`under redis SETs, ${labels[way]}`, await checkpoints(m, dir, ROUNDS, way), way === 'workers');
          const writes = await w.stop();
          log(`${mib} MiB: memcpy ${memcpy.toFixed(1)} ms; ${writes} SETs during the busy rounds`);
        } finally {
          await m.kill();
        }
      }
      rows.push(...(await throughProtection(log)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
};

/**
 * The service as clients see it: redis-benchmark (SET and GET, CLIENTS clients) against the unprotected VM (its host
 * forward) and through a protected pair (`colo pair --guest qemu --mode remus`, 128 MiB each, checkpoints every
 * INTERVAL), the same guest build, in this run. Then the takeover: the primary's colo process is SIGKILLed (its
 * QEMU dies with it) and the time until the secondary's guest answers PING on its service port is the RTO.
 */
async function throughProtection(log: (line: string) => void): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const vm = new QemuMachine({
    kernel: tool('GUEST_KERNEL'),
    initrd: tool('GUEST_INITRD'),
    qemuBinary: tool('QEMU'),
    memoryBytes: 128 * 1024 * 1024,
    accel: 'tcg',
    forward: { hostPort: PORT + 30, guestPort: 6379 },
  });
  let bare: ReturnType<typeof combine>;
  try {
    await vm.start();
    await vm.waitForService(tcpProbe('PING\r\n', '+PONG'), 120_000);
    bare = combine(redisBenchmark(vm.forward.port, 'set,get', 20_000, CLIENTS));
  } finally {
    await vm.kill();
  }
  const t0 = performance.now();
  const pair = await startPair(PORT + 10, 'remus', { checkpoint: { remus_interval: INTERVAL } }, undefined, {
    qemu: { kernel: tool('GUEST_KERNEL'), initrd: tool('GUEST_INITRD'), accel: 'tcg', forwardPort: PORT + 20 },
    memory: '128MiB',
    protectMs: 300_000,
  });
  const firstProtection = performance.now() - t0;
  try {
    const through = combine(redisBenchmark(pair.port, 'set,get', 2_000, CLIENTS));
    log(`unprotected VM ${bare.rps.toFixed(0)} req/s (p50 ${bare.p50} ms); protected pair ${through.rps.toFixed(0)} req/s (p50 ${through.p50} ms); protected in ${(firstProtection / 1000).toFixed(1)} s`);
    rows.push({
      name: `redis-benchmark SET+GET, ${CLIENTS} clients, through the protected QEMU pair (Remus every ${INTERVAL}, 128 MiB, TCG; p50 ${through.p50} ms vs ${bare.p50} ms)`,
      value: through.rps,
      unit: 'req/s',
      baseline: `unprotected VM ${bare.rps.toFixed(0)} req/s`,
      ratio: through.rps / bare.rps,
    });
    const rto: number[] = [];
    const reprotect: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const { primary } = await protectedPair(pair.sup, 300_000);
      const survivor = pair.sup.nodes[1 - primary]!;
      const killedAt = performance.now();
      pair.sup.nodes[primary]!.process!.kill('SIGKILL');
      const ping = tcpProbe('PING\r\n', '+PONG', 500);
      for (;;) {
        if (await ping(survivor.service.host, survivor.service.port)) break;
        if (performance.now() - killedAt > 60_000) throw new Error(`the survivor ${survivor.id} did not serve within 60 s of the kill`);
        await new Promise((r) => setTimeout(r, 5));
      }
      rto.push(performance.now() - killedAt);
      const servedAt = performance.now();
      await protectedPair(pair.sup, 300_000);
      reprotect.push(performance.now() - servedAt);
      log(`kill ${k + 1}: ${survivor.id} serves after ${rto.at(-1)!.toFixed(0)} ms, protected again after ${(reprotect.at(-1)! / 1000).toFixed(1)} s`);
    }
    rows.push({
      name: `RTO: SIGKILL of the primary's colo (and its QEMU) to the secondary's guest answering PING (median of ${KILLS}; re-protected in ${(median(reprotect) / 1000).toFixed(1)} s)`,
      value: median(rto),
      unit: 'ms',
    });
  } finally {
    await pair.sup.stop();
  }
  return rows;
}

/** Waits until one node is a protected primary and the other its synchronised secondary. */
async function protectedPair(sup: Awaited<ReturnType<typeof startPair>>['sup'], timeoutMs: number): Promise<{ primary: 0 | 1 }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await sup.statuses();
    const i = all.findIndex((s) => s?.role === 'primary' && s.protected);
    if (i >= 0 && all[1 - i]?.role === 'secondary' && all[1 - i]?.protected && sup.nodes[i]!.process) return { primary: i as 0 | 1 };
    if (Date.now() > deadline) throw new Error(`pair not protected within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export default suite;
