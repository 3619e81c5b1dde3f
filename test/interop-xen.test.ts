/**
 * Operator story: "an image colo writes is one Xen accepts, and colo judges images as Xen does."
 * Xen's own stream verifier (verify-stream-v2 from Debian's xen-utils-4.17, installed by `npm run tools`) and
 * `colo stream verify` read the same files; their verdicts must agree, except where Xen's verifier is known to
 * be narrower (checkpointed streams, optional records) or laxer (trailing bytes, record placement): those
 * differences are asserted too, so a change on either side shows.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import {
  PAGE_SIZE,
  StreamErrorCode as C,
  encodeLibxcDomainHeader,
  encodeLibxcImageHeader,
  encodeLibxlHeader,
  encodePageData,
  encodeRawRecord,
  encodeRecord,
  encodeXlHeader,
  type StreamRecord,
} from '@colo/stream';
import { beforeAll, describe, expect, test } from 'vitest';
import { main } from '../packages/cli/src/main.js';
import { HVM_DOMAIN, checkpointedStream, concat, cpuid, emulatorContext, hvmContext, hvmParams, msr, page, range, tsc } from '../packages/stream/test/samples.js';
import { tool } from './support/tools.js';

let verifier: string;
let pythonPath: string;
const dir = mkdtempSync(join(tmpdir(), 'colo-interop-'));

beforeAll(() => {
  // Throws (failing every test, loudly) when the verifier is missing: "run 'npm run tools'".
  verifier = tool('XEN_VERIFY');
  pythonPath = tool('XEN_PYTHONPATH');
});

type Format = 'libxl' | 'libxc' | 'xl';

function xenVerdict(file: string, format: Format): { ok: boolean; output: string } {
  const r = spawnSync('python3', [verifier, '-f', format, '-i', file], { env: { ...process.env, PYTHONPATH: pythonPath }, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`cannot run Xen's verifier with python3 (${r.error.message}): run 'npm run tools'`);
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

async function coloVerdict(file: string, kind: Format): Promise<{ ok: boolean; code?: string; output: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let output = '';
  stdout.on('data', (d) => (output += d));
  stderr.on('data', (d) => (output += d));
  const exit = await main(['stream', 'verify', '--kind', kind, file], { stdout, stderr, stdin: Readable.from([]) });
  expect([0, 1]).toContain(exit); // never usage (2), I/O (3) or internal (70)
  return { ok: exit === 0, code: /\((STREAM_[A-Z_]+) at byte/.exec(output)?.[1], output };
}

let n = 0;
function save(bytes: Uint8Array): string {
  const f = join(dir, `image-${n++}.bin`);
  writeFileSync(f, bytes);
  return f;
}

const r = (x: StreamRecord) => encodeRecord(x);
const END_XC = r({ layer: 'libxc', kind: 'END' });
const END_XL = r({ layer: 'libxl', kind: 'END' });

interface Parts {
  header?: Uint8Array;
  image?: Uint8Array;
  domain?: Uint8Array;
  /** libxc records before PAGE_DATA, the page data, the ones after (END included). */
  statics?: Uint8Array[];
  pages?: Uint8Array;
  after?: Uint8Array[];
  libxl?: Uint8Array[];
}

/** A plain HVM image in Xen's order: CPUID + MSR policies, STATIC_DATA_END, PAGE_DATA, TSC, HVM_CONTEXT, HVM_PARAMS, END; EMULATOR_CONTEXT, END. */
function image(p: Parts = {}): Uint8Array {
  return concat([
    p.header ?? encodeLibxlHeader(),
    r({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }),
    p.image ?? encodeLibxcImageHeader(),
    p.domain ?? encodeLibxcDomainHeader(HVM_DOMAIN),
    ...(p.statics ?? [r(cpuid), r(msr), r({ layer: 'libxc', kind: 'STATIC_DATA_END' })]),
    p.pages ?? encodePageData(range(0, 300), (pfn) => page(pfn)),
    ...(p.after ?? [r(tsc), r(hvmContext), r(hvmParams), END_XC]),
    ...(p.libxl ?? [r(emulatorContext), END_XL]),
  ]);
}

function setU32(bytes: Uint8Array, at: number, value: number, bigEndian = false): Uint8Array {
  const b = bytes.slice();
  new DataView(b.buffer).setUint32(at, value >>> 0, !bigEndian);
  return b;
}

const u32s = (...v: number[]) => new Uint8Array(new Uint32Array(v).buffer);
const pages = () => encodePageData([5, 6], (pfn) => page(pfn));

describe('images colo writes are accepted by Xen', () => {
  test('a plain HVM image (policies, STATIC_DATA_END, PAGE_DATA, TSC, HVM context and params, emulator context)', async () => {
    const f = save(image());
    const xen = xenVerdict(f, 'libxl');
    expect(xen.ok, xen.output).toBe(true);
    expect((await coloVerdict(f, 'libxl')).ok).toBe(true);
  });

  test('the same image in an xl save file', async () => {
    const config = new TextEncoder().encode('{"c_info":{"type":"hvm","name":"guest"}}');
    const optional = concat([u32s(config.length), config]);
    const f = save(concat([encodeXlHeader({ mandatoryFlags: 3, optionalFlags: 0, optionalData: optional }), image()]));
    const xen = xenVerdict(f, 'xl');
    expect(xen.ok, xen.output).toBe(true);
    expect((await coloVerdict(f, 'xl')).ok).toBe(true);
  });

  test('a bare libxc stream, a v2 libxc stream, and pinned/typed page entries', async () => {
    const types = [0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15];
    const typed = encodePageData(range(0, types.length), (pfn) => page(pfn), { types });
    const bare = concat([encodeLibxcImageHeader(), encodeLibxcDomainHeader(HVM_DOMAIN), r(cpuid), r({ layer: 'libxc', kind: 'STATIC_DATA_END' }), typed, r(hvmContext), END_XC]);
    const v2 = concat([encodeLibxcImageHeader({ version: 2 }), encodeLibxcDomainHeader(HVM_DOMAIN), typed, r(hvmContext), END_XC]);
    for (const bytes of [bare, v2]) {
      const f = save(bytes);
      const xen = xenVerdict(f, 'libxc');
      expect(xen.ok, xen.output).toBe(true);
      expect((await coloVerdict(f, 'libxc')).ok).toBe(true);
    }
  });
});

describe('broken images: colo and Xen give the same verdict', () => {
  const full = image();
  const pd = encodePageData(range(0, 4), (pfn) => page(pfn));
  const cases: [string, () => Uint8Array, Format, string][] = [
    ['bad libxl ident', () => setU32(full, 0, 0x4c696278, true).fill(0x41, 0, 1), 'libxl', C.BAD_IDENT],
    ['libxl version 3', () => image({ header: setU32(encodeLibxlHeader(), 8, 3, true) }), 'libxl', C.BAD_VERSION],
    ['libxl reserved option bit', () => image({ header: setU32(encodeLibxlHeader(), 12, 4, true) }), 'libxl', C.BAD_OPTIONS],
    ['bad libxc marker', () => image({ image: setU32(encodeLibxcImageHeader(), 0, 0xfffffffe, true) }), 'libxl', C.BAD_IDENT],
    ['bad libxc id', () => image({ image: setU32(encodeLibxcImageHeader(), 8, 0x58454e47, true) }), 'libxl', C.BAD_IDENT],
    ['libxc version 4', () => image({ image: setU32(encodeLibxcImageHeader(), 12, 4, true) }), 'libxl', C.BAD_VERSION],
    ['libxc reserved option bit', () => image({ image: setU32(encodeLibxcImageHeader(), 16, 0x00020000, true) }), 'libxl', C.BAD_OPTIONS],
    ['libxc reserved field', () => image({ image: setU32(encodeLibxcImageHeader(), 20, 1, true) }), 'libxl', C.BAD_OPTIONS],
    ['unknown guest type', () => image({ domain: setU32(encodeLibxcDomainHeader(HVM_DOMAIN), 0, 3) }), 'libxl', C.BAD_DOMAIN_HEADER],
    ['page shift 13', () => image({ domain: setU32(encodeLibxcDomainHeader(HVM_DOMAIN), 4, 13) }), 'libxl', C.BAD_DOMAIN_HEADER],
    ['non-zero padding', () => image({ libxl: [setU32(r(emulatorContext), 8 + 341 - 1, 0x01000000), END_XL] }), 'libxl', C.BAD_PADDING],
    ['invalid PAGE_DATA page type 5', () => image({ pages: setU32(pd, 16 + 8 + 4, 5 * 0x10000000) }), 'libxl', C.BAD_RECORD],
    ['PAGE_DATA pfn reserved bit 55', () => image({ pages: setU32(pd, 16 + 4, 1 << 23) }), 'libxl', C.BAD_RECORD],
    ['PAGE_DATA reserved field', () => image({ pages: setU32(pd, 12, 1) }), 'libxl', C.BAD_RECORD],
    ['PAGE_DATA count 0', () => image({ pages: encodeRawRecord(1, u32s(0, 0)) }), 'libxl', C.BAD_LENGTH],
    ['PAGE_DATA one page short', () => image({ pages: encodeRawRecord(1, concat([u32s(2, 0, 1, 0, 2, 0), page(1)])) }), 'libxl', C.BAD_LENGTH],
    ['HVM_PARAMS count 2 with one entry', () => image({ after: [r(tsc), r(hvmContext), encodeRawRecord(0x0a, concat([u32s(2, 0), new Uint8Array(16)])), END_XC] }), 'libxl', C.BAD_LENGTH],
    ['HVM_PARAMS reserved field', () => image({ after: [r(tsc), r(hvmContext), encodeRawRecord(0x0a, u32s(0, 1)), END_XC] }), 'libxl', C.BAD_RECORD],
    ['TSC reserved field', () => image({ after: [encodeRawRecord(0x08, u32s(0, 0, 0, 0, 0, 7)), r(hvmContext), END_XC] }), 'libxl', C.BAD_RECORD],
    ['empty HVM_CONTEXT', () => image({ after: [encodeRawRecord(0x09, new Uint8Array(0)), END_XC] }), 'libxl', C.BAD_LENGTH],
    ['CPUID policy of 25 bytes', () => image({ statics: [encodeRawRecord(0x11, new Uint8Array(25)), r({ layer: 'libxc', kind: 'STATIC_DATA_END' })] }), 'libxl', C.BAD_LENGTH],
    ['STATIC_DATA_END in a v2 stream', () => image({ image: encodeLibxcImageHeader({ version: 2 }), statics: [r({ layer: 'libxc', kind: 'STATIC_DATA_END' })] }), 'libxl', C.MISPLACED_RECORD],
    ['libxc END with a body', () => image({ after: [r(hvmContext), encodeRawRecord(0, new Uint8Array(8))] }), 'libxl', C.BAD_LENGTH],
    ['unknown mandatory libxc record', () => image({ after: [r(hvmContext), encodeRawRecord(0x13, new Uint8Array(8)), END_XC] }), 'libxl', C.UNKNOWN_RECORD],
    ['unknown mandatory libxl record', () => image({ libxl: [encodeRawRecord(0x6, new Uint8Array(0)), END_XL] }), 'libxl', C.UNKNOWN_RECORD],
    ['unknown emulator id', () => image({ libxl: [encodeRawRecord(0x3, u32s(9, 0, 1)), END_XL] }), 'libxl', C.BAD_RECORD],
    ['deprecated TOOLSTACK record', () => image({ after: [r(hvmContext), encodeRawRecord(0x0b, new Uint8Array(8)), END_XC] }), 'libxl', C.BAD_RECORD],
    ['truncated inside PAGE_DATA', () => full.subarray(0, 300 + 100 * PAGE_SIZE), 'libxl', C.TRUNCATED],
    ['truncated before the libxl END', () => full.subarray(0, full.length - 8), 'libxl', C.TRUNCATED],
    ['xl file with a bad magic', () => concat([encodeXlHeader({ mandatoryFlags: 2, optionalFlags: 0, optionalData: new Uint8Array(0) }).fill(0x41, 0, 3), image()]), 'xl', C.BAD_IDENT],
  ];

  for (const [name, build, format, code] of cases) {
    test(name, async () => {
      const f = save(build());
      const xen = xenVerdict(f, format);
      const colo = await coloVerdict(f, format);
      expect(xen.ok, `Xen's verifier accepted a '${name}' image:\n${xen.output}`).toBe(false);
      expect(colo.ok, colo.output).toBe(false);
      expect(colo.code, colo.output).toBe(code);
    });
  }
});

describe("known differences from Xen's verifier (asserted, so a change on either side shows)", () => {
  test('the big-endian option bits: colo refuses them (as Xen\'s C readers do); the verifier tests `options & 0` and misses them', async () => {
    const libxl = save(image({ header: setU32(encodeLibxlHeader(), 12, 1, true) }));
    expect(xenVerdict(libxl, 'libxl').ok).toBe(true);
    expect((await coloVerdict(libxl, 'libxl')).code).toBe(C.BAD_OPTIONS);
    const libxc = save(image({ image: setU32(encodeLibxcImageHeader(), 16, 0x00010000, true) }));
    expect(xenVerdict(libxc, 'libxl').ok).toBe(true);
    expect((await coloVerdict(libxc, 'libxl')).code).toBe(C.BAD_OPTIONS);
  });

  test('a checkpointed COLO stream: colo follows the layers; Xen reads libxl records as libxc ones and fails', async () => {
    const f = save(checkpointedStream({ checkpoints: 2 }));
    expect(xenVerdict(f, 'libxl').ok).toBe(false);
    expect((await coloVerdict(f, 'libxl')).ok).toBe(true);
  });

  test('an optional record: colo skips it as the spec allows; Xen\'s verifier rejects every optional record', async () => {
    const f = save(image({ libxl: [encodeRawRecord(0x80000001, new Uint8Array(5)), END_XL] }));
    expect(xenVerdict(f, 'libxl').ok).toBe(false);
    expect((await coloVerdict(f, 'libxl')).ok).toBe(true);
  });

  test('bytes after END and PAGE_DATA before STATIC_DATA_END: colo refuses (as Xen\'s C reader would), the verifier does not look', async () => {
    const trailing = save(concat([image(), new Uint8Array(8)]));
    expect(xenVerdict(trailing, 'libxl').ok).toBe(true);
    expect((await coloVerdict(trailing, 'libxl')).code).toBe(C.TRAILING_DATA);
    const early = save(image({ statics: [r(cpuid)], after: [r({ layer: 'libxc', kind: 'STATIC_DATA_END' }), r(hvmContext), END_XC] }));
    expect(xenVerdict(early, 'libxl').ok).toBe(true);
    expect((await coloVerdict(early, 'libxl')).code).toBe(C.MISPLACED_RECORD);
  });

  test('xenstore key/value pairs: valid for colo; the Python 3 verifier has a str/bytes bug and fails them', async () => {
    const xs = r({ layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: 2, index: 0, entries: [{ key: 'physmap/1/size', value: '1000' }] });
    const f = save(image({ libxl: [xs, r(emulatorContext), END_XL] }));
    expect(xenVerdict(f, 'libxl').ok).toBe(false);
    expect((await coloVerdict(f, 'libxl')).ok).toBe(true);
    const empty = save(image({ libxl: [r({ layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: 2, index: 0, entries: [] }), END_XL] }));
    expect(xenVerdict(empty, 'libxl').ok).toBe(true);
    expect((await coloVerdict(empty, 'libxl')).ok).toBe(true);
  });
});
