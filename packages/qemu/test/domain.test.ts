import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DomainErrorCode, type DomainError } from '@colo/domain';
import { QemuDomain, QemuErrorCode, readGuestRam, type QemuDomainOptions, type QemuError } from '@colo/qemu';
import { tool } from './tools.js';

/**
 * The QEMU guest through colo's Domain interface, as the checkpoint engine drives it (Remus): the primary's
 * domain boots; its clients are served through openConnection/deliverInput/onOutput; each checkpoint suspends it,
 * takes the pages readAndClearDirty() gives and the device state, and resumes it; a standby domain takes the
 * pages and state; at the takeover, the standby's resume() starts a QEMU from them.
 */
const domains: QemuDomain[] = [];
afterAll(() => {
  for (const d of domains) d.destroy();
});

function options(port: number): QemuDomainOptions {
  return { kernel: tool('GUEST_KERNEL'), initrd: tool('GUEST_INITRD'), qemuBinary: tool('QEMU'), accel: 'tcg', forward: { hostPort: port, guestPort: 6379 } };
}

const resp = (...words: string[]) => new TextEncoder().encode(`*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`);

/** A client of a domain's service through the Domain interface: one connection, replies as text. */
function client(d: QemuDomain, id: number) {
  let got = '';
  let waiter: (() => void) | undefined;
  d.onOutput((conn, bytes) => {
    if (conn !== id || !bytes) return;
    got += Buffer.from(bytes).toString();
    waiter?.();
  });
  d.openConnection(id);
  return {
    async ask(...words: string[]): Promise<string> {
      got = '';
      d.deliverInput(id, resp(...words));
      const deadline = Date.now() + 15_000;
      while (!/\r\n/.test(got) || (got.startsWith('$') && !got.startsWith('$-1') && got.split('\r\n').length < 3)) {
        if (Date.now() > deadline) throw new Error(`no reply to ${words.join(' ')}: ${JSON.stringify(got)}`);
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 50);
        });
      }
      return got.startsWith('$') && !got.startsWith('$-1') ? got.split('\r\n')[1]! : got.split('\r\n')[0]!;
    },
  };
}

describe('a QEMU guest behind the Domain interface (Remus)', () => {
  it('checkpoints into a standby domain, which takes over with every acknowledged write before the last checkpoint', async () => {
    const primary = await QemuDomain.boot({ ...options(24300), memoryBytes: 128 * 1024 * 1024 });
    domains.push(primary);
    expect(primary.state).toBe('running');
    const c = client(primary, 1);
    expect(await c.ask('SET', 'k0', 'v0')).toBe('+OK');

    const standby = QemuDomain.standby({ ...options(24301), pageCount: primary.pageCount });
    domains.push(standby);
    expect(standby.state).toBe('suspended');

    // Initial synchronisation: everything while it runs, then the stop-and-copy round, as the engine does it.
    primary.enableLogDirty();
    const all = primary.readAndClearDirty();
    expect(all.length).toBe(primary.pageCount);
    standby.writePages(all, primary.pages(0, primary.pageCount));
    const checkpoint = async () => {
      await primary.suspend();
      expect(primary.state).toBe('suspended');
      const dirty = primary.readAndClearDirty();
      standby.writePages(dirty, Buffer.concat([...dirty].map((pfn) => primary.page(pfn))));
      standby.setVcpuContext(primary.getVcpuContext());
      standby.setDeviceState(primary.getDeviceState());
      const digest = createHash('sha256').update(readGuestRam(primary.qemu!)).digest('hex');
      await primary.resume();
      return { dirty: dirty.length, digest };
    };
    const first = await checkpoint();
    expect(first.dirty).toBeGreaterThan(0);
    for (let i = 1; i <= 20; i++) expect(await c.ask('SET', `k${i}`, `v${i}`)).toBe('+OK');
    expect(await c.ask('INCR', 'n')).toBe(':1');
    const second = await checkpoint();
    expect(second.dirty).toBeLessThan(primary.pageCount / 4);
    expect(await c.ask('SET', 'after', 'not in any checkpoint')).toBe('+OK');

    // The standby's RAM (its pages, read from its RAM file: the bases of page deltas) is the primary's at the
    // last checkpoint.
    const standbyDigest = createHash('sha256').update(standby.pages(0, standby.pageCount)).digest('hex');
    expect(standbyDigest).toBe(second.digest);
    expect(Buffer.from(standby.page(3)).equals(Buffer.from(primary.page(3)))).toBe(true);

    // The primary's QEMU is gone; the standby takes over.
    const primaryRam = primary.qemu!.ramPath;
    primary.destroy();
    expect(existsSync(primaryRam)).toBe(false);
    await standby.resume();
    expect(standby.state).toBe('running');
    const s = client(standby, 9);
    expect(await s.ask('GET', 'k0')).toBe('v0');
    for (let i = 1; i <= 20; i++) expect(await s.ask('GET', `k${i}`)).toBe(`v${i}`);
    expect(await s.ask('GET', 'after')).toBe('$-1');
    expect(await s.ask('INCR', 'n')).toBe(':2');
  }, 300_000);

  it('refuses page writes while running, pages outside the guest, and a vCPU context that is not a QEMU guest\'s', async () => {
    const standby = QemuDomain.standby({ ...options(24302), pageCount: 16384 });
    domains.push(standby);
    expect(() => standby.writePages([16384], new Uint8Array(4096))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PFN }));
    expect(() => standby.writePages([1], new Uint8Array(100))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PAGE_DATA }));
    expect(() => standby.setVcpuContext(new Uint8Array([1, 2, 3]))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_VCPU_CONTEXT }));
    // A standby has no pages to give and nothing dirty: it never ran.
    standby.enableLogDirty();
    expect(standby.readAndClearDirty()).toHaveLength(0);
    standby.destroy();
    expect(() => standby.writePages([1], new Uint8Array(4096))).toThrow(expect.objectContaining({ code: DomainErrorCode.DESTROYED }));
  });

  it('fifty client connections opened at once all reach the guest\'s redis (QEMU\'s user networking drops part of a burst)', async () => {
    const d = await QemuDomain.boot({ ...options(24305), memoryBytes: 128 * 1024 * 1024 });
    domains.push(d);
    const replies = new Map<number, string>();
    d.onOutput((id, bytes) => {
      if (bytes) replies.set(id, (replies.get(id) ?? '') + Buffer.from(bytes).toString());
    });
    const ids = Array.from({ length: 50 }, (_, i) => 100 + i);
    for (const id of ids) {
      d.openConnection(id);
      d.deliverInput(id, resp('PING'));
    }
    const deadline = Date.now() + 30_000;
    while (ids.some((id) => replies.get(id) !== '+PONG\r\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(ids.filter((id) => replies.get(id) !== '+PONG\r\n')).toEqual([]);
    for (const id of ids) d.closeConnection(id);
    d.destroy();
  }, 120_000);

  it('a QEMU that fails to save its state, or stops answering, makes the checkpoint GUEST_LOST: a defined end, bounded', async () => {
    // The domain's work folder (where QEMU writes its device state) is made under TMPDIR: a folder of this
    // test's own, so that removing it makes QEMU's `migrate` fail the way a full or broken disk would.
    const own = mkdtempSync(join(tmpdir(), 'domain-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = own;
    let d: QemuDomain;
    try {
      d = await QemuDomain.boot({ ...options(24303), memoryBytes: 128 * 1024 * 1024 });
    } finally {
      process.env.TMPDIR = saved;
    }
    domains.push(d);
    const work = readdirSync(own).filter((n) => n.startsWith('colo-qemu-domain-'));
    expect(work).toHaveLength(1);
    rmSync(join(own, work[0]!), { recursive: true });
    const failed = await d.suspend().then(() => undefined, (e: unknown) => e as DomainError);
    expect(failed?.code).toBe(DomainErrorCode.GUEST_LOST);
    expect(failed?.message).toMatch(/cannot save its state/);
    expect((failed?.cause as QemuError).code).toBe(QemuErrorCode.MIGRATE_FAILED);
    d.destroy();

    // A frozen QEMU: the checkpoint's first QMP command has a deadline (5 s), then the guest is lost.
    const frozen = await QemuDomain.boot({ ...options(24304), memoryBytes: 128 * 1024 * 1024 });
    domains.push(frozen);
    process.kill(frozen.qemu!.pid!, 'SIGSTOP');
    const t0 = Date.now();
    const hung = await frozen.suspend().then(() => undefined, (e: unknown) => e as DomainError);
    expect(hung?.code).toBe(DomainErrorCode.GUEST_LOST);
    expect((hung?.cause as QemuError).code).toBe(QemuErrorCode.QMP_TIMEOUT);
    expect(Date.now() - t0).toBeLessThan(15_000);
    frozen.destroy();
    rmSync(own, { recursive: true, force: true });
  }, 300_000);
});
