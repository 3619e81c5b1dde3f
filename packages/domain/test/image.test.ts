import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamError, StreamWriter, GuestType, decodeAll } from '@colo/stream';
import { DomainError, RecordBatch, restoreImage, saveImage, saveImageToBuffer, SimulatedGuest } from '@colo/domain';
import { tool } from '../../../test/support/tools.js';
import { recordedGuest, resp } from './helpers.js';

const MEMORY = 2 * 1024 * 1024;

/** A guest holding data, with a half-received command on connection 5, suspended. */
async function guestWithData() {
  const h = recordedGuest({ memoryBytes: MEMORY, name: 'web-1' });
  for (let i = 0; i < 300; i++) h.send(1, resp('SET', `key:${i}`, `value-${i}-${'x'.repeat(i)}`));
  h.send(1, resp('INCRBY', 'counter', '12345'));
  h.send(1, resp('SET', Buffer.from([0, 255, 13, 10]), Buffer.alloc(20_000, 0xab)));
  h.send(5, '*2\r\n$3\r\nGET\r\n$5\r\nkey:7');
  await h.guest.suspend();
  return h;
}

async function* chunksOf(bytes: Uint8Array, size: number) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

describe('save and restore', () => {
  it('restores every key, the memory, the device state and the replies', async () => {
    const { guest } = await guestWithData();
    const image = await saveImageToBuffer(guest);
    // Restored from a stream of odd-sized chunks, as from a socket or file.
    const restored = await restoreImage(chunksOf(image, 65_537));
    expect(restored.name).toBe('web-1');
    expect(restored.uuid).toBe(guest.uuid);
    expect(restored.pageCount).toBe(guest.pageCount);
    expect(restored.memoryDigest()).toBe(guest.memoryDigest());
    expect(restored.keyCount).toBe(guest.keyCount);
    for (const k of guest.keys()) expect(restored.readKey(k)).toEqual(guest.readKey(k));
    expect(restored.openConnections).toEqual(guest.openConnections);
    expect(restored.getVcpuContext()).toEqual(guest.getVcpuContext());

    const r = recordedGuestFrom(restored);
    await guest.resume();
    const o = recordedGuestFrom(guest);
    // The half-received command continues where it was.
    expect(r.send(5, '\r\n')).toBe(o.send(5, '\r\n'));
    for (const cmd of [resp('GET', 'key:299'), resp('INCR', 'counter'), resp('DBSIZE'), resp('MGET', 'key:0', 'nope')]) {
      expect(r.send(1, cmd)).toBe(o.send(1, cmd));
    }
    expect(restored.memoryDigest()).toBe(guest.memoryDigest());
    guest.destroy();
    restored.destroy();
  });

  it('writes the layout a plain HVM image has, in batches of at most 1024 pages', async () => {
    const { guest } = await guestWithData();
    const items = decodeAll(await saveImageToBuffer(guest), { kind: 'libxl' });
    const kinds = items.map((i) => (i.item === 'record' ? i.record.kind : i.item));
    const pageRecords = items.filter((i) => i.item === 'record' && i.record.kind === 'PAGE_DATA');
    expect(pageRecords).toHaveLength(Math.ceil(guest.pageCount / 1024));
    const compact = kinds.filter((k, i) => !(k === 'PAGE_DATA' && kinds[i - 1] === 'PAGE_DATA'));
    expect(compact).toEqual([
      'libxl-header', 'LIBXC_CONTEXT', 'libxc-image-header', 'libxc-domain-header', 'X86_CPUID_POLICY', 'X86_MSR_POLICY',
      'STATIC_DATA_END', 'PAGE_DATA', 'X86_TSC_INFO', 'HVM_CONTEXT', 'HVM_PARAMS', 'END', 'EMULATOR_CONTEXT', 'END',
    ]);
    guest.setXenstore([{ key: 'k', value: 'v' }]);
    const withXs = decodeAll(await saveImageToBuffer(guest), { kind: 'libxl' }).map((i) => (i.item === 'record' ? i.record.kind : i.item));
    expect(withXs.slice(-3)).toEqual(['EMULATOR_XENSTORE_DATA', 'EMULATOR_CONTEXT', 'END']);
    guest.destroy();
  });

  it('is accepted by Xen’s own verifier (verify-stream-v2 -f libxl)', async () => {
    const verify = tool('XEN_VERIFY');
    const pythonPath = tool('XEN_PYTHONPATH');
    const { guest } = await guestWithData();
    const dir = mkdtempSync(join(tmpdir(), 'colo-image-'));
    const file = join(dir, 'guest.img');
    writeFileSync(file, await saveImageToBuffer(guest));
    const r = spawnSync('python3', [verify, '-f', 'libxl', '-i', file, '-v'], { env: { ...process.env, PYTHONPATH: pythonPath }, encoding: 'utf8' });
    expect(r.stderr + r.stdout).not.toMatch(/Error/);
    expect(r.status).toBe(0);
    guest.destroy();
  });

  it('refuses to save a running guest', async () => {
    const g = new SimulatedGuest({ memoryBytes: 64 * 1024 });
    await expect(saveImageToBuffer(g)).rejects.toMatchObject({ code: 'DOMAIN_NOT_SUSPENDED' });
    await g.suspend();
    const gen = saveImage(g, { chunkSize: 4096 });
    await gen.next();
    await g.resume();
    await expect((async () => { for await (const _ of gen); })()).rejects.toMatchObject({ code: 'DOMAIN_NOT_SUSPENDED' });
    g.destroy();
  });

  describe('refuses bad images with a typed error and builds no guest', () => {
    const refused = async (bytes: Uint8Array, code: string, cls: typeof StreamError | typeof DomainError) => {
      const e = await restoreImage(bytes).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(cls);
      expect((e as { code: string }).code).toBe(code);
    };

    it('truncated', async () => {
      const { guest } = await guestWithData();
      const image = await saveImageToBuffer(guest);
      await refused(image.subarray(0, image.length - 8), 'STREAM_TRUNCATED', StreamError);
      await refused(image.subarray(0, 5000), 'STREAM_TRUNCATED', StreamError);
      guest.destroy();
    });

    it('corrupt header or record fields', async () => {
      const { guest } = await guestWithData();
      const image = await saveImageToBuffer(guest);
      const badIdent = Buffer.from(image);
      badIdent[0] ^= 0xff;
      await refused(badIdent, 'STREAM_BAD_IDENT', StreamError);
      // HVM_PARAMS whose length field disagrees with its count.
      const items = decodeAll(image, { kind: 'libxl' });
      const params = items.find((i) => i.item === 'record' && i.record.kind === 'HVM_PARAMS')!;
      const badLength = Buffer.from(image);
      badLength.writeUInt32LE(image.readUInt32LE(params.offset + 4) - 16, params.offset + 4);
      await refused(badLength, 'STREAM_BAD_LENGTH', StreamError);
      // Non-zero padding after the device state record.
      const ctx = items.find((i) => i.item === 'record' && i.record.kind === 'EMULATOR_CONTEXT')!;
      const bodyLength = image.readUInt32LE(ctx.offset + 4);
      expect(bodyLength % 8).not.toBe(0);
      const badPadding = Buffer.from(image);
      badPadding[ctx.offset + 8 + bodyLength] = 1;
      await refused(badPadding, 'STREAM_BAD_PADDING', StreamError);
      guest.destroy();
    });

    it('pages missing, or beyond the guest’s size', async () => {
      const { guest } = await guestWithData();
      const build = (pfns: number[]) => {
        const w = new StreamWriter();
        w.libxlHeader().record({ layer: 'libxl', kind: 'LIBXC_CONTEXT' });
        w.libxcHeaders({ guestType: GuestType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 });
        w.record({ layer: 'libxc', kind: 'STATIC_DATA_END' });
        w.pageData(pfns, (pfn) => (pfn < guest.pageCount ? guest.page(pfn) : new Uint8Array(4096)));
        w.record({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: guest.getVcpuContext() });
        w.record({ layer: 'libxc', kind: 'END' });
        w.record({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: 0, index: 0, blob: guest.getDeviceState() });
        w.record({ layer: 'libxl', kind: 'END' });
        return Buffer.concat(w.take());
      };
      const all = [...Array(guest.pageCount).keys()];
      expect((await restoreImage(build(all))).memoryDigest()).toBe(guest.memoryDigest());
      await refused(build(all.slice(1)), 'DOMAIN_IMAGE_PAGE_COUNT_MISMATCH', DomainError);
      await refused(build([...all, guest.pageCount]), 'DOMAIN_IMAGE_PAGE_COUNT_MISMATCH', DomainError);
      await expect(restoreImage(build(all), { expectPageCount: 1 })).rejects.toMatchObject({ code: 'DOMAIN_IMAGE_PAGE_COUNT_MISMATCH' });
      guest.destroy();
    });

    it('pages that hold no store', async () => {
      const g = new SimulatedGuest({ memoryBytes: 64 * 1024, startSuspended: true });
      g.writePages([0], new Uint8Array(4096).fill(0x41));
      await refused(await saveImageToBuffer(g), 'DOMAIN_IMAGE_BAD_MEMORY', DomainError);
      g.destroy();
    });
  });

  it('RecordBatch applies a checkpoint atomically: a refused device state leaves the guest as it was', async () => {
    const { guest } = await guestWithData();
    const target = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    const before = target.memoryDigest();
    const batch = new RecordBatch();
    for (const item of decodeAll(await saveImageToBuffer(guest), { kind: 'libxl' })) if (item.item === 'record') batch.add(item.record);
    batch.deviceState = new Uint8Array([1, 2, 3]);
    expect(() => batch.applyTo(target)).toThrow(expect.objectContaining({ code: 'DOMAIN_BAD_DEVICE_STATE' }));
    expect(target.memoryDigest()).toBe(before);
    batch.deviceState = guest.getDeviceState();
    batch.applyTo(target);
    expect(target.memoryDigest()).toBe(guest.memoryDigest());
    guest.destroy();
    target.destroy();
  });
});

function recordedGuestFrom(guest: SimulatedGuest) {
  const out: Buffer[] = [];
  guest.onOutput((_id, b) => b && out.push(Buffer.from(b)));
  return {
    send(id: number, input: string | Uint8Array) {
      if (!guest.openConnections.includes(id)) guest.openConnection(id);
      guest.deliverInput(id, typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
      return Buffer.concat(out.splice(0)).toString('latin1');
    },
  };
}
