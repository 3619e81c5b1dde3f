import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { dirname } from 'node:path';
import { QemuError, QemuErrorCode, QemuMachine, tcpProbe } from '@colo/qemu';
import { redis } from './redis.js';
import { testMachines, tool } from './tools.js';

/**
 * A real QEMU (Debian's qemu-system-x86, TCG here: KVM does not work on these nested machines) booting the guest
 * scripts/guest.sh builds (Debian's cloud kernel, busybox, a real redis-server). Every machine a test starts is
 * killed and its RAM file deleted in afterAll, also when the test fails.
 */
const machines: QemuMachine[] = [];
afterAll(async () => {
  for (const m of machines) await m.kill();
  for (const m of machines) expect(existsSync(m.ramPath), m.ramPath).toBe(false);
});

const { machine, port } = testMachines(24100, machines);

const redisReady = tcpProbe('PING\r\n', '+PONG');

/** Whether `needle` occurs in the file (read in 16 MiB chunks, with an overlap for a needle across chunks). */
function fileContains(path: string, needle: Buffer): boolean {
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(16 * 1024 * 1024);
    let pos = 0;
    const size = statSync(path).size;
    while (pos < size) {
      const n = readSync(fd, chunk, 0, chunk.length, pos);
      if (n <= 0) break;
      if (chunk.subarray(0, n).includes(needle)) return true;
      pos += n - needle.length;
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

describe('a QEMU guest supervised by colo', () => {
  it('boots Linux with redis-server inside; its RAM is a file this host reads; stop and cont through QMP', async () => {
    const m = machine({ name: 'boot-test' });
    await m.start();
    expect(await m.runState()).toBe('running');
    const bootMs = await m.waitForService(redisReady, 120_000);
    expect(await redis(m.forward.port, 'INFO', 'server')).toMatch(/redis_version/);
    const marker = `colo-marker-${process.pid}-${Date.now()}`;
    expect(await redis(m.forward.port, 'SET', 'marker', marker)).toBe('+OK');
    // The guest's memory is the file: the value redis keeps is in it, readable from outside the guest.
    expect(statSync(m.ramPath).size).toBe(128 * 1024 * 1024);
    await m.pause();
    expect(await m.runState()).toBe('paused');
    expect(fileContains(m.ramPath, Buffer.from(marker))).toBe(true);
    // Paused: the service does not answer (the guest runs no instruction) ...
    expect(await tcpProbe('PING\r\n', '+PONG', 500)(m.forward.host, m.forward.port)).toBe(false);
    await m.resume();
    expect(await m.runState()).toBe('running');
    // ... and carries on where it was after cont.
    expect(await redis(m.forward.port, 'GET', 'marker')).toBe(marker);
    console.log(`guest served redis ${bootMs} ms after QEMU's monitor answered (TCG, 128 MiB)`);
  }, 180_000);

  it('a QMP command QEMU refuses is a typed error; the machine goes on', async () => {
    const m = machine();
    await m.start();
    const err = await m.execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuError);
    expect((err as QemuError).code).toBe(QemuErrorCode.QMP_COMMAND);
    expect((err as QemuError).message).toMatch(/CommandNotFound/);
    expect(await m.runState()).toBe('running');
    await m.stop();
    expect(m.exited).toBeDefined();
    expect(existsSync(m.ramPath)).toBe(false);
  }, 60_000);

  it('a QEMU that stops answering (SIGSTOP) times out, bounded; one that dies is EXITED, and its files are gone', async () => {
    const m = machine();
    await m.start();
    const exits: unknown[] = [];
    m.onExit((e) => exits.push(e));
    process.kill(m.pid!, 'SIGSTOP');
    const t0 = Date.now();
    const hung = await m.execute('query-status', undefined, 500).catch((e: unknown) => e);
    expect((hung as QemuError).code).toBe(QemuErrorCode.QMP_TIMEOUT);
    expect(Date.now() - t0).toBeLessThan(3000);
    await expect(m.waitForService(redisReady, 300)).rejects.toMatchObject({ code: QemuErrorCode.GUEST_NOT_READY });
    process.kill(m.pid!, 'SIGKILL');
    for (let i = 0; i < 100 && !m.exited; i++) await new Promise((r) => setTimeout(r, 20));
    expect(m.exited).toMatchObject({ signal: 'SIGKILL' });
    expect(exits).toHaveLength(1);
    await expect(m.execute('query-status')).rejects.toMatchObject({ code: QemuErrorCode.EXITED });
    await expect(m.waitForService(redisReady, 1000)).rejects.toMatchObject({ code: QemuErrorCode.EXITED });
    expect(existsSync(m.ramPath)).toBe(false);
  }, 60_000);

  it('refuses settings it cannot start and a QEMU that cannot run, with typed errors', async () => {
    const base = { kernel: tool('GUEST_KERNEL'), initrd: tool('GUEST_INITRD'), memoryBytes: 128 * 1024 * 1024, forward: { hostPort: 1, guestPort: 6379 } };
    for (const bad of [{ kernel: '/nope/vmlinuz' }, { memoryBytes: 100 * 1024 * 1024 + 1 }, { memoryBytes: 32 * 1024 * 1024 }, { accel: 'xen' as never }]) {
      expect(() => new QemuMachine({ ...base, ...bad })).toThrow(expect.objectContaining({ code: QemuErrorCode.BAD_CONFIG }));
    }
    await expect(machine({ qemuBinary: '/nope/qemu-system-x86_64' }).start()).rejects.toMatchObject({ code: QemuErrorCode.START_FAILED });
    // QEMU starts but refuses its arguments (a RAM directory that does not exist): it exits at once.
    const m = machine({ ramDir: '/nope-dir' });
    const err = await m.start().catch((e: unknown) => e);
    expect((err as QemuError).code).toBe(QemuErrorCode.START_FAILED);
    expect((err as QemuError).message).toMatch(/nope-dir/);
    // A guest too small for its kernel and initramfs resets before its console prints a word; with -no-reboot
    // QEMU ends with code 0, and the error says what that means instead of nothing.
    const small = machine({ memoryBytes: 64 * 1024 * 1024 });
    await small.start();
    const ended = await small.waitForService(redisReady, 60_000).catch((e: unknown) => e as QemuError);
    expect((ended as QemuError).code).toBe(QemuErrorCode.EXITED);
    expect((ended as QemuError).message).toMatch(/code 0\): the guest powered off or reset/);
  }, 120_000);
});

describe('a QEMU never outlives colo', () => {
  it.each(['exit', 'kill'])('a supervising process that ends (%s) without stopping its machine takes QEMU with it', async (death) => {
    const { spawnSync } = await import('node:child_process');
    const { resolve } = await import('node:path');
    const script = `
      import { QemuMachine } from '@colo/qemu';
      const m = new QemuMachine({ kernel: ${JSON.stringify(tool('GUEST_KERNEL'))}, initrd: ${JSON.stringify(tool('GUEST_INITRD'))},
        qemuBinary: ${JSON.stringify(tool('QEMU'))}, memoryBytes: 64 * 1024 * 1024, accel: 'tcg', forward: { hostPort: ${port()}, guestPort: 6379 } });
      await m.start();
      console.log(JSON.stringify({ pid: m.pid, ram: m.ramPath, qmp: m.qmpPath }));
      if (process.env.COLO_TEST_DEATH === 'kill') process.kill(process.pid, 'SIGKILL');
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--conditions=@colo/source', '--input-type=module', '-e', script], {
      env: { ...process.env, COLO_TEST_DEATH: death },
      cwd: resolve(import.meta.dirname, '..'),
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (death === 'kill') expect(r.signal, r.stderr).toBe('SIGKILL');
    else expect(r.status, r.stderr).toBe(0);
    const { pid, ram, qmp } = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { pid: number; ram: string; qmp: string };
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      try {
        process.kill(pid, 0);
        await new Promise((res) => setTimeout(res, 50));
      } catch {
        alive = false;
      }
    }
    expect(alive).toBe(false);
    // After a SIGKILL nobody deleted the RAM file or the monitor's folder: the next machine made sweeps a dead
    // owner's leftovers.
    if (death === 'kill') expect(existsSync(dirname(qmp))).toBe(true);
    if (death === 'kill') machine();
    expect(existsSync(ram)).toBe(false);
    expect(existsSync(dirname(qmp))).toBe(false);
  }, 90_000);
});
