import type { EpochRecord } from './arbiter.js';
import { ArbiterError, ArbiterErrorCode } from './errors.js';

/** Reads a record from an arbiter's answer; anything but {epoch: integer >= 0, holder: non-empty string} is corrupt. */
export function parseRecord(v: unknown, what: string): EpochRecord | null {
  if (v === null) return null;
  const o = v as { epoch?: unknown; holder?: unknown };
  if (typeof o !== 'object' || !Number.isSafeInteger(o.epoch) || (o.epoch as number) < 0 || typeof o.holder !== 'string' || o.holder.length === 0) {
    throw new ArbiterError(ArbiterErrorCode.CORRUPT_RECORD, `${what}: not an epoch record: ${JSON.stringify(v)?.slice(0, 200)}`);
  }
  return { epoch: o.epoch as number, holder: o.holder as string };
}
