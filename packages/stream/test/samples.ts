/**
 * Sample streams for the tests, built with the encoders: a plain HVM save image as Xen writes it, a COLO
 * checkpointed main channel, and a back channel. Page contents are derived from the pfn so a test can tell
 * any page from any other.
 */
import {
  ColoControl,
  GuestType,
  PAGE_SIZE,
  StreamWriter,
  encodeRecord,
  type LibxcDomainHeader,
  type StreamRecord,
} from '@colo/stream';

export const HVM_DOMAIN: LibxcDomainHeader = { guestType: GuestType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 };

/** A page whose bytes identify its pfn (and a salt, to tell checkpoints apart). */
export function page(pfn: number, salt = 0): Uint8Array {
  const p = new Uint8Array(PAGE_SIZE);
  const v = new DataView(p.buffer);
  for (let i = 0; i < PAGE_SIZE; i += 8) {
    v.setUint32(i, pfn >>> 0, true);
    v.setUint32(i + 4, (i * 2654435761 + salt) >>> 0, true);
  }
  return p;
}

export function range(from: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

export const cpuid: StreamRecord = { layer: 'libxc', kind: 'X86_CPUID_POLICY', data: new Uint8Array(24 * 3).map((_, i) => i) };
export const msr: StreamRecord = { layer: 'libxc', kind: 'X86_MSR_POLICY', data: new Uint8Array(16 * 2).map((_, i) => 255 - i) };
export const tsc: StreamRecord = { layer: 'libxc', kind: 'X86_TSC_INFO', mode: 0, khz: 2_400_000, nsec: 123456789012n, incarnation: 1 };
export const hvmContext: StreamRecord = { layer: 'libxc', kind: 'HVM_CONTEXT', blob: new Uint8Array(1013).map((_, i) => i * 7) };
export const hvmParams: StreamRecord = {
  layer: 'libxc',
  kind: 'HVM_PARAMS',
  params: [
    { index: 2n, value: 0xfeffen },
    { index: 5n, value: 1n },
  ],
};
export const emulatorContext: StreamRecord = { layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: 2, index: 0, blob: new Uint8Array(333).map((_, i) => i) };

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** A plain HVM image in Xen's order (no xenstore pairs, so Xen's verifier's xenstore bug stays out of it). */
export function plainHvmImage(opts: { pages?: number; chunkSize?: number } = {}): Uint8Array {
  const w = new StreamWriter({ chunkSize: opts.chunkSize ?? 1 << 20 });
  w.libxlHeader().record({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }).libxcHeaders(HVM_DOMAIN);
  w.record(cpuid).record(msr).record({ layer: 'libxc', kind: 'STATIC_DATA_END' });
  w.pageData(range(0, opts.pages ?? 1500), (pfn) => page(pfn));
  w.record(tsc).record(hvmContext).record(hvmParams).record({ layer: 'libxc', kind: 'END' });
  w.record(emulatorContext).record({ layer: 'libxl', kind: 'END' });
  return concat(w.take());
}

/** The minimal valid libxl image (80 bytes). */
export function minimalImage(): Uint8Array {
  const w = new StreamWriter();
  w.libxlHeader().record({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }).libxcHeaders(HVM_DOMAIN, { version: 2 });
  w.record({ layer: 'libxc', kind: 'END' }).record({ layer: 'libxl', kind: 'END' });
  return concat(w.take());
}

/**
 * A COLO main channel: initial copy and `checkpoints` checkpoints, each followed by CHECKPOINT_STATE
 * (NEW_CHECKPOINT) except the last; then, if `finish`, the libxc END and libxl END of a clean stop.
 */
export function checkpointedStream(opts: { checkpoints?: number; finish?: boolean } = {}): Uint8Array {
  const n = opts.checkpoints ?? 3;
  const w = new StreamWriter({ chunkSize: 1 << 16 });
  w.libxlHeader().record({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }).libxcHeaders(HVM_DOMAIN);
  w.record(cpuid).record(msr).record({ layer: 'libxc', kind: 'STATIC_DATA_END' });
  w.pageData(range(0, 40), (pfn) => page(pfn));
  for (let c = 1; c <= n; c++) {
    w.pageData(range(c * 3, 5 + c), (pfn) => page(pfn, c));
    w.record(tsc).record(hvmContext).record(hvmParams).record({ layer: 'libxc', kind: 'CHECKPOINT' });
    w.record({ layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: 2, index: 0, entries: [{ key: 'physmap/1', value: `v${c}` }] });
    w.record(emulatorContext).record({ layer: 'libxl', kind: 'CHECKPOINT_END' });
    if (c < n) w.record({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.NEW_CHECKPOINT });
  }
  if (opts.finish ?? true) w.record({ layer: 'libxc', kind: 'END' }).record({ layer: 'libxl', kind: 'END' });
  return concat(w.take());
}

/** A COLO back channel: READY, then per checkpoint SUSPENDED, dirty pfns, RESUMED (and an optional record). */
export function backChannel(checkpoints = 3): Uint8Array {
  const recs: StreamRecord[] = [{ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_READY }];
  for (let c = 1; c <= checkpoints; c++) {
    recs.push({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_SUSPENDED });
    recs.push({ layer: 'libxc', kind: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: range(c * 100, c * 3) });
    recs.push({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_RESUMED });
  }
  recs.push({ layer: 'libxl', kind: 'OPTIONAL', type: 0x80000042, body: new Uint8Array([1, 2, 3]) });
  return concat(recs.map(encodeRecord));
}

export { concat };
