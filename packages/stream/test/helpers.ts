import { StreamDecoder, StreamError, encodeLibxcDomainHeader, encodeLibxcImageHeader, encodeLibxlHeader, encodeRawRecord, type DecoderOptions, type StreamItem } from '@colo/stream';
import { HVM_DOMAIN, concat } from './samples.js';

/** Runs f and returns the StreamError it throws; fails the test if it throws anything else or nothing. */
export function streamError(f: () => unknown): StreamError {
  try {
    f();
  } catch (e) {
    if (e instanceof StreamError) return e;
    throw new Error(`expected a StreamError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected a StreamError, but nothing was thrown');
}

/** Decodes `bytes` pushed in chunks of the given sizes (cycled), then ends. */
export function decodeChunked(bytes: Uint8Array, sizes: number[], opts: DecoderOptions): StreamItem[] {
  const d = new StreamDecoder(opts);
  const items: StreamItem[] = [];
  let at = 0;
  let i = 0;
  while (at < bytes.length) {
    const n = Math.max(1, sizes.length ? sizes[i++ % sizes.length]! : bytes.length);
    items.push(...d.push(bytes.subarray(at, at + n)));
    at += n;
  }
  items.push(...d.end());
  return items;
}

/** libxl header, LIBXC_CONTEXT, libxc image header (version), HVM domain header: 64 bytes. */
export function prefix(version = 3): Uint8Array {
  return concat([encodeLibxlHeader(), rec(1), encodeLibxcImageHeader({ version }), encodeLibxcDomainHeader(HVM_DOMAIN)]);
}

/** A raw record of any type/body (encodeRawRecord pads it). */
export function rec(type: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  return encodeRawRecord(type, body);
}

export function u32s(...values: number[]): Uint8Array {
  const b = new Uint8Array(4 * values.length);
  const v = new DataView(b.buffer);
  values.forEach((x, i) => v.setUint32(4 * i, x >>> 0, true));
  return b;
}

/** A copy of `bytes` with a u32 written at `at` (little-endian unless `be`). */
export function patch32(bytes: Uint8Array, at: number, value: number, be = false): Uint8Array {
  const b = bytes.slice();
  new DataView(b.buffer).setUint32(at, value >>> 0, !be);
  return b;
}

export function patch8(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const b = bytes.slice();
  b[at] = value;
  return b;
}

export { concat };

/** A cheap canonical text of decoded items (typed arrays as base64, bigints as text): deep toEqual on pages is slow. */
export function canon(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return `bytes:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')}`;
    if (typeof v === 'bigint') return `bigint:${v}`;
    return v;
  });
}
