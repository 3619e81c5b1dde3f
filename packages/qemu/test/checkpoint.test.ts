import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  changedPages,
  loadDeviceState,
  QemuError,
  QemuErrorCode,
  QemuMachine,
  readGuestRam,
  saveDeviceState,
  tcpProbe,
  writeGuestPages,
} from '@colo/qemu';
import { redis } from './redis.js';
import { testMachines, tool } from './tools.js';

/**
 * Checkpoints of a real QEMU guest taken from outside, and a takeover from one: the primary's RAM read from its
 * shared file, the pages changed since the last checkpoint found by comparing copies, the device and vCPU state
 * from QEMU's migration stream without shared RAM; a secondary RAM file kept up to date page by page; then the
 * primary's QEMU killed and a second QEMU started from the secondary's RAM file and the last device state. What
 * redis acknowledged before the checkpoint is there; what came after it is not.
 */
const machines: QemuMachine[] = [];
const files: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'colo-qemu-ckpt-'));
afterAll(async () => {
  for (const m of machines) await m.kill();
  for (const f of files) rmSync(f, { force: true });
  rmSync(dir, { recursive: true, force: true });
});

const { machine, port } = testMachines(24200, machines);

const digest = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('checkpoints of a QEMU guest, and a takeover from the last one', () => {
  it('the secondary\'s RAM equals the primary\'s at each checkpoint; a QEMU started from it serves what was acknowledged before it', async () => {
    const primary = machine({ name: 'ckpt-primary' });
    await primary.start();
    await primary.waitForService(tcpProbe('PING\r\n', '+PONG'), 120_000);
    expect(await redis(primary.forward.port, 'SET', 'before-0', 'zero')).toBe('+OK');

    // Checkpoint 0: everything (the initial synchronisation).
    await primary.pause();
    const ram0 = readGuestRam(primary);
    const dev0 = await saveDeviceState(primary, dir);
    await primary.resume();
    const secondaryRam = `/dev/shm/colo-qemu-test-secondary-${process.pid}.ram`;
    files.push(secondaryRam);
    writeFileSync(secondaryRam, ram0);
    expect(dev0.length).toBeGreaterThan(1000);
    expect(dev0.length).toBeLessThan(4 * 1024 * 1024);

    // Writes acknowledged before checkpoint 1 must survive; the one after it must not.
    for (let i = 0; i < 50; i++) expect(await redis(primary.forward.port, 'SET', `before-1:${i}`, `v${i}`.repeat(100))).toBe('+OK');
    const t0 = performance.now();
    await primary.pause();
    const paused = performance.now();
    const ram1 = readGuestRam(primary);
    const read = performance.now();
    const dirty = changedPages(ram0, ram1);
    const compared = performance.now();
    const dev1 = await saveDeviceState(primary, dir);
    const saved = performance.now();
    await primary.resume();
    const resumed = performance.now();
    expect(dirty.length).toBeGreaterThan(0);
    expect(dirty.length).toBeLessThan(ram1.length / 4096);
    // The secondary applies the changed pages: its RAM is then the primary's at checkpoint 1, byte for byte.
    const data = Buffer.concat([...dirty].map((pfn) => ram1.subarray(pfn * 4096, pfn * 4096 + 4096)));
    writeGuestPages(secondaryRam, dirty, data);
    const copy = readGuestRam({ ramPath: secondaryRam, memoryBytes: ram1.length } as QemuMachine);
    expect(digest(copy)).toBe(digest(ram1));
    console.log(
      `checkpoint 1 of a 128 MiB guest (TCG): ${dirty.length} changed pages; pause ${(resumed - t0).toFixed(1)} ms = stop ${(paused - t0).toFixed(1)}` +
        ` + read RAM ${(read - paused).toFixed(1)} + compare ${(compared - read).toFixed(1)} + device state ${(saved - compared).toFixed(1)} (${dev1.length} bytes) + cont ${(resumed - saved).toFixed(1)}`,
    );
    expect(await redis(primary.forward.port, 'SET', 'after-1', 'lost with the primary')).toBe('+OK');

    // The primary's QEMU dies; a second QEMU starts from the secondary's RAM file and checkpoint 1's state.
    await primary.kill();
    const secondary = machine({ name: 'ckpt-secondary', incoming: { ramFile: secondaryRam } });
    await secondary.start();
    await loadDeviceState(secondary, dev1, dir);
    await secondary.resume();
    expect(await secondary.runState()).toBe('running');
    await secondary.waitForService(tcpProbe('PING\r\n', '+PONG'), 30_000);
    expect(await redis(secondary.forward.port, 'GET', 'before-0')).toBe('zero');
    for (let i = 0; i < 50; i++) expect(await redis(secondary.forward.port, 'GET', `before-1:${i}`)).toBe(`v${i}`.repeat(100));
    expect(await redis(secondary.forward.port, 'GET', 'after-1')).toBe('$-1');
    // It is a live guest: it takes writes.
    expect(await redis(secondary.forward.port, 'INCR', 'after-takeover')).toBe(':1');
    await secondary.kill();
    expect(existsSync(secondaryRam)).toBe(false);
  }, 240_000);

  it('device state that is not QEMU\'s fails the restore with a typed error, and the machine does not run', async () => {
    const source = machine();
    await source.start();
    await source.pause();
    const ram = readGuestRam(source);
    await source.kill();
    const ramFile = `/dev/shm/colo-qemu-test-bad-${process.pid}.ram`;
    files.push(ramFile);
    writeFileSync(ramFile, ram);
    const m = machine({ incoming: { ramFile } });
    await m.start();
    const err = await loadDeviceState(m, Buffer.from('not a migration stream'), dir, 5000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuError);
    expect([QemuErrorCode.MIGRATE_FAILED, QemuErrorCode.EXITED]).toContain((err as QemuError).code);
    // Whatever QEMU did with it (QEMU 7.2 exits on a failed incoming migration), the guest never runs on half a
    // state: either the process is gone (EXITED) or it is not running.
    const state = await m.runState().catch((e: QemuError) => e.code);
    expect(['paused', 'other', QemuErrorCode.EXITED]).toContain(state);
  }, 120_000);
});
