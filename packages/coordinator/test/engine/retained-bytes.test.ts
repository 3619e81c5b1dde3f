import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { EmulatorId, encodePageData, encodeRecord } from '@colo/stream';
import { SecondaryCheckpointEngine } from '../../src/engine/secondary-engine.js';
import { streamHead } from './stream-head.js';

const PAGES = 64;

/** Page contents that differ per page and per checkpoint. */
const pageOf = (cp: number) => (pfn: number) => {
  const p = new Uint8Array(4096);
  for (let i = 0; i < p.length; i++) p[i] = (pfn * 31 + cp * 7 + i) & 0xff;
  return p;
};

/** A checkpoint's records as the primary writes them: pages (in two records), state, CHECKPOINT_END. */
function checkpoint(source: SimulatedGuest, cp: number, pfns: number[]): Buffer {
  const half = Math.ceil(pfns.length / 2);
  return Buffer.concat([
    encodePageData(pfns.slice(0, half), pageOf(cp)),
    encodePageData(pfns.slice(half), pageOf(cp)),
    encodeRecord({ layer: 'libxc', kind: 'X86_TSC_INFO', ...source.getTscInfo() }),
    encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: source.getVcpuContext() }),
    encodeRecord({ layer: 'libxc', kind: 'HVM_PARAMS', params: source.getHvmParams() }),
    encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT' }),
    encodeRecord({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: EmulatorId.QEMU_UPSTREAM, index: 0, blob: source.getDeviceState() }),
    encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_END' }),
  ]);
}

/**
 * The promise the secondary engine makes to a link that reads into reused memory (ReadRing): after receive()
 * it references only the last `retainedBytes` bytes it was given. Here every delivered chunk is overwritten
 * right after receive() except those last bytes, as the ring would overwrite it; the guest must still end up
 * exactly as the checkpoints say, for the staged synchronisation and for buffered checkpoints alike.
 */
describe('SecondaryCheckpointEngine: references only its retainedBytes of what it was given', () => {
  it('applies checkpoints correctly when everything older than retainedBytes is overwritten after each delivery', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 60 }), async (cuts) => {
        const source = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
        const guest = new SimulatedGuest({ memoryBytes: PAGES * 4096, startSuspended: true });
        const devices: Buffer[] = [];
        const vcpus: Buffer[] = [];
        const setDevice = guest.setDeviceState.bind(guest);
        const setVcpu = guest.setVcpuContext.bind(guest);
        guest.setDeviceState = (b) => (devices.push(Buffer.from(b)), setDevice(b));
        guest.setVcpuContext = (b) => (vcpus.push(Buffer.from(b)), setVcpu(b));
        let due = 0;
        let applied = 0;
        const e = new SecondaryCheckpointEngine({
          mode: 'colo',
          extensions: [],
          send: async () => {},
          hostGuest: () => guest,
          emit: (ev) => {
            if (ev.type === 'CHECKPOINT_RECEIVED') due++;
            if (ev.type === 'PRIMARY_LOST') throw ev.error;
          },
        });
        const all = Array.from({ length: PAGES }, (_, i) => i);
        const plan: number[][] = [all, [3, 4, 5, 40], [5, 63, 0]];
        const chunks: Buffer[] = [];
        for (let cp = 0; cp < plan.length; cp++) {
          const bytes = Buffer.concat([cp === 0 ? streamHead() : Buffer.alloc(0), checkpoint(source, cp, plan[cp]!)]);
          // In COLO each later checkpoint is preceded by NEW_CHECKPOINT; the engine reads it at the boundary.
          const control = cp === 0 ? Buffer.alloc(0) : Buffer.from(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 0 }));
          chunks.push(Buffer.concat([control, bytes]));
        }
        const stream = Buffer.concat(chunks);
        // Deliver the stream in the given cuts (cycled), each chunk a fresh copy scribbled after receive().
        let at = 0;
        let c = 0;
        while (at < stream.length) {
          const n = Math.min(cuts[c++ % cuts.length]!, stream.length - at);
          const chunk = Buffer.from(stream.subarray(at, at + n));
          e.receive(chunk);
          const keep = Math.min(e.retainedBytes, n);
          chunk.fill(0xee, 0, n - keep);
          at += n;
          // Apply what was received whole, as the statechart would ask.
          for (; due > 0; due--, applied++) {
            e.applyCheckpoint();
            await e.idle();
          }
        }
        expect(applied).toBe(plan.length);
        for (const pfn of all) {
          const last = [...plan.keys()].reverse().find((cp) => plan[cp]!.includes(pfn))!;
          expect(Buffer.from(guest.page(pfn)).equals(Buffer.from(pageOf(last)(pfn))), `page ${pfn}`).toBe(true);
        }
        // The context blobs the guest was given at each apply are the ones sent.
        expect(devices).toHaveLength(plan.length);
        for (const d of devices) expect(d.equals(Buffer.from(source.getDeviceState()))).toBe(true);
        for (const v of vcpus) expect(v.equals(Buffer.from(source.getVcpuContext()))).toBe(true);
        source.destroy();
        guest.destroy();
      }),
      { numRuns: 60 },
    );
  });
});
