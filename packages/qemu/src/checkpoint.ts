import { closeSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { QemuError, QemuErrorCode } from './errors.js';
import type { QemuMachine } from './machine.js';

/**
 * A checkpoint of a QEMU guest, taken from outside: the guest's RAM is its shared file, so the pages are read
 * there; everything else (vCPUs and devices) is QEMU's own migration stream with the `x-ignore-shared`
 * capability, which leaves shared RAM out and writes only the device and vCPU state (a few hundred KB). Which
 * pages changed is found by comparing the RAM against the copy taken at the previous checkpoint: the 6.1 kernel
 * here sets no soft-dirty bits, and KVM's dirty log is private to QEMU.
 */

const PAGE = 4096;
const MIGRATE_POLL_MS = 2;

/** The RAM file's bytes now (the guest should be paused, or the copy is torn). */
export function readGuestRam(m: QemuMachine, into?: Buffer): Buffer {
  const buf = into ?? Buffer.allocUnsafe(m.memoryBytes);
  if (buf.length !== m.memoryBytes) throw new QemuError(QemuErrorCode.BAD_CONFIG, `a RAM copy of ${buf.length} bytes for a ${m.memoryBytes}-byte guest`);
  readRamFile(m.ramPath, buf, 0);
  return buf;
}

/** Fills `into` from a RAM file at byte `position`; a file that ends first is QEMU_EXITED (the RAM is gone). */
export function readRamFile(ramFile: string, into: Uint8Array, position: number): void {
  const fd = openSync(ramFile, 'r');
  try {
    for (let off = 0; off < into.length; ) {
      const n = readSync(fd, into, off, Math.min(64 * 1024 * 1024, into.length - off), position + off);
      if (n <= 0) throw new QemuError(QemuErrorCode.EXITED, `the RAM file ${ramFile} ended at ${position + off} bytes`);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** The pfns whose 4 KiB differ between two RAM copies of one guest, ascending. */
export function changedPages(previous: Buffer, current: Buffer): Uint32Array {
  if (previous.length !== current.length || previous.length % PAGE !== 0) {
    throw new QemuError(QemuErrorCode.BAD_CONFIG, `RAM copies of ${previous.length} and ${current.length} bytes`);
  }
  const pages = previous.length / PAGE;
  const out = new Uint32Array(pages);
  let n = 0;
  for (let pfn = 0; pfn < pages; pfn++) {
    const off = pfn * PAGE;
    // Buffer.compare is one memcmp in C++: per page, the loop's own cost is small next to it.
    if (previous.compare(current, off, off + PAGE, off, off + PAGE) !== 0) out[n++] = pfn;
  }
  return out.slice(0, n);
}

/** Reads `count` pages from `firstPfn` of a RAM file (a standby's copy of the guest) into a new buffer. */
export function readGuestPages(ramFile: string, firstPfn: number, count: number): Buffer {
  const out = Buffer.allocUnsafe(count * PAGE);
  readRamFile(ramFile, out, firstPfn * PAGE);
  return out;
}

/** Writes pages into a RAM file (a secondary's copy of the guest): `data` holds pfns.length pages in order. */
export function writeGuestPages(ramFile: string, pfns: ArrayLike<number>, data: Uint8Array): void {
  if (data.byteLength !== pfns.length * PAGE) throw new QemuError(QemuErrorCode.BAD_CONFIG, `${data.byteLength} bytes for ${pfns.length} pages`);
  const fd = openSync(ramFile, 'r+');
  try {
    for (let i = 0; i < pfns.length; i++) writeSync(fd, data, i * PAGE, PAGE, pfns[i]! * PAGE);
  } finally {
    closeSync(fd);
  }
}

/**
 * The paused guest's device and vCPU state as QEMU's migration stream without shared RAM (what Xen carries in
 * EMULATOR_CONTEXT). The guest stays paused ('postmigrate'); resume() continues it. `dir` holds the file QEMU
 * writes, removed afterwards. Rejects QEMU_MIGRATE_FAILED with QEMU's reason, QMP_TIMEOUT past `timeoutMs`.
 */
export async function saveDeviceState(m: QemuMachine, dir: string, timeoutMs = 10_000): Promise<Buffer> {
  const file = join(dir, `devices-${process.pid}-${Date.now()}.mig`);
  try {
    await m.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    await m.execute('migrate', { uri: `exec:cat > ${shellQuote(file)}` });
    await migrationDone(m, 'migrate', timeoutMs);
    return readFileSync(file);
  } finally {
    rmSync(file, { force: true });
  }
}

/**
 * Loads device and vCPU state into a machine started with `incoming` (its RAM file already holds the
 * checkpoint's pages); the guest is left paused, ready for resume().
 */
export async function loadDeviceState(m: QemuMachine, state: Uint8Array, dir: string, timeoutMs = 10_000): Promise<void> {
  const file = join(dir, `devices-in-${process.pid}-${Date.now()}.mig`);
  writeFileSync(file, state);
  try {
    await m.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    await m.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(file)}` });
    await migrationDone(m, 'migrate-incoming', timeoutMs);
  } finally {
    rmSync(file, { force: true });
  }
}

async function migrationDone(m: QemuMachine, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await m.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
    if (s.status === 'completed') return;
    if (s.status === 'failed' || s.status === 'cancelled') {
      throw new QemuError(QemuErrorCode.MIGRATE_FAILED, `${what} ${s.status}: ${s['error-desc'] ?? 'QEMU gave no reason'}`);
    }
    if (Date.now() > deadline) throw new QemuError(QemuErrorCode.QMP_TIMEOUT, `${what} not completed within ${timeoutMs} ms (status ${s.status ?? 'none'})`);
    await new Promise((r) => setTimeout(r, MIGRATE_POLL_MS));
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
