/** Redis's integer rules for string values (INCR and friends): signed 64-bit, strict decimal. */
export const INT64_MAX = 9223372036854775807n;
export const INT64_MIN = -9223372036854775808n;

/**
 * A decimal int64 as Redis accepts it (optional '-', no '+', no leading zeros, no spaces), or undefined.
 * Small values stay numbers (the common INCR path); larger ones are bigints.
 */
export function parseInt64(b: Uint8Array): number | bigint | undefined {
  const n = b.length;
  if (n === 0 || n > 20) return undefined;
  let i = 0;
  const neg = b[0] === 0x2d;
  if (neg) i = 1;
  if (i >= n) return undefined;
  if (b[i] === 0x30 && (neg || n > i + 1)) return undefined; // "-0" and leading zeros are not integers to Redis
  let v = 0;
  for (let j = i; j < n; j++) {
    const d = b[j]! - 0x30;
    if (d < 0 || d > 9) return undefined;
    v = v * 10 + d;
  }
  if (v <= Number.MAX_SAFE_INTEGER) return neg ? -v : v;
  const big = BigInt(Buffer.from(b).toString('latin1'));
  return big > INT64_MAX || big < INT64_MIN ? undefined : big;
}

export function add(a: number | bigint, b: number | bigint): number | bigint | undefined {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a + b;
    if (Number.isSafeInteger(r)) return r;
  }
  const r = BigInt(a) + BigInt(b);
  return r > INT64_MAX || r < INT64_MIN ? undefined : r;
}

