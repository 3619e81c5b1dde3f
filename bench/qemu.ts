/**
 * Checkpoints of a real QEMU guest (Debian's kernel, busybox and redis-server inside; TCG here: KVM does not run
 * on these nested machines), taken from outside as packages/qemu/src/checkpoint.ts takes them: QMP stop, read
 * the RAM file, compare with the previous checkpoint's copy, save the device state, QMP cont. For 128 MiB and
 * 256 MiB guests, idle and while a client writes to redis, ROUNDS checkpoints each; the pause and its parts as
 * medians. The baseline, measured in the same run on the same RAM, is a memcpy of the guest's RAM size: the
 * least any copy of the memory costs. Also: reading into a fresh buffer each time against a reused one.
 *
 * Needs the tools (`npm run tools`: QEMU and the guest). Run alone: `npx tsx --conditions=@colo/source bench/run.ts qemu`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { changedPages, QemuMachine, readGuestRam, saveDeviceState, tcpProbe } from '@colo/qemu';
import { RespClient } from '../packages/cli/src/client/resp-client.js';
import { median, type BenchRow, type BenchSuite } from './harness.js';
import { tool } from './pair.js';

const ROUNDS = Number(process.env.COLO_BENCH_QEMU_ROUNDS ?? 15);
/** Ports 23200.. (failover 23100.., ab-pair 23000.., pair 22800..). */
const PORT = 23200;


interface Parts {
  pause: number;
  read: number;
  compare: number;
  device: number;
  pages: number;
}

async function checkpoints(m: QemuMachine, dir: string, rounds: number, fresh: boolean): Promise<Parts[]> {
  let previous = readGuestRam(m);
  let spare = Buffer.allocUnsafe(m.memoryBytes);
  const out: Parts[] = [];
  for (let i = 0; i < rounds; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await m.pause();
    const t1 = performance.now();
    const current = readGuestRam(m, fresh ? undefined : spare);
    const t2 = performance.now();
    const dirty = changedPages(previous, current);
    const t3 = performance.now();
    await saveDeviceState(m, dir);
    const t4 = performance.now();
    await m.resume();
    const t5 = performance.now();
    out.push({ pause: t5 - t0, read: t2 - t1, compare: t3 - t2, device: t4 - t3, pages: dirty.length });
    spare = previous;
    previous = current;
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
  name: 'qemu: checkpoints of a real QEMU guest (TCG), pause by guest size',
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
          const idle = await checkpoints(m, dir, ROUNDS, false);
          const idleFresh = await checkpoints(m, dir, ROUNDS, true);
          const w = writer(m.forward.port);
          await new Promise((r) => setTimeout(r, 300));
          const busy = await checkpoints(m, dir, ROUNDS, false);
          const writes = await w.stop();
          const med = (xs: Parts[], k: keyof Parts) => median(xs.map((x) => x[k]));
          log(`${mib} MiB: memcpy ${memcpy.toFixed(1)} ms; idle pause ${med(idle, 'pause').toFixed(1)} ms (${med(idle, 'pages')} pages); busy ${med(busy, 'pause').toFixed(1)} ms (${med(busy, 'pages')} pages, ${writes} SETs during it)`);
          const row = (name: string, xs: Parts[]) =>
            rows.push({
              name: `${mib} MiB, ${name}: pause (read ${med(xs, 'read').toFixed(0)} + compare ${med(xs, 'compare').toFixed(0)} + device ${med(xs, 'device').toFixed(0)} ms; ${med(xs, 'pages')} pages)`,
              value: med(xs, 'pause'),
              unit: 'ms',
              baseline: `memcpy of ${mib} MiB ${memcpy.toFixed(1)} ms`,
              ratio: med(xs, 'pause') / memcpy,
            });
          row('idle, RAM read into a reused buffer', idle);
          row('idle, RAM read into a fresh buffer', idleFresh);
          row('under redis SETs', busy);
        } finally {
          await m.kill();
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
};

export default suite;
