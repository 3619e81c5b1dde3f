import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { QemuMachine, type QemuMachineOptions } from '@colo/qemu';

/** Paths scripts/tools.sh recorded in .tools/env; a missing tool fails the test loudly (never skips). */
const repo = resolve(import.meta.dirname, '../../..');
export function tool(name: string): string {
  const envFile = join(repo, '.tools/env');
  if (!existsSync(envFile)) throw new Error(`.tools/env is missing: run 'npm run tools' (${name})`);
  const line = readFileSync(envFile, 'utf8').split('\n').find((l) => l.startsWith(`${name}=`));
  const path = line?.slice(name.length + 1).trim();
  if (!path || path === 'missing' || !existsSync(path)) throw new Error(`${name} is not installed (${path ?? 'not in .tools/env'}): run 'npm run tools'`);
  return path;
}

/**
 * Test machines of the built guest (TCG, 128 MiB unless told), each forwarded to the next port from `firstPort`
 * and added to `machines` (the test file kills them all in afterAll).
 */
export function testMachines(firstPort: number, machines: QemuMachine[]) {
  let next = firstPort;
  return {
    port: () => next++,
    machine(o: Partial<QemuMachineOptions> = {}): QemuMachine {
      const m = new QemuMachine({
        kernel: tool('GUEST_KERNEL'),
        initrd: tool('GUEST_INITRD'),
        qemuBinary: tool('QEMU'),
        memoryBytes: 128 * 1024 * 1024,
        accel: 'tcg',
        forward: { hostPort: next++, guestPort: 6379 },
        ...o,
      });
      machines.push(m);
      return m;
    },
  };
}
