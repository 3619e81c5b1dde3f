/** Parsing of human-friendly quantities in config files and flags: durations and byte sizes. */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3, k: 1024, m: 1024 ** 2, g: 1024 ** 3,
};

/** "250ms", "2s", "1.5m", or a bare number of milliseconds -> milliseconds; undefined if not a duration. */
export function parseDurationMs(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * DURATION_UNITS[(m[2] ?? 'ms').toLowerCase()]!;
}

/** "256MiB", "1GiB", "4096", "64k" -> bytes; undefined if not a size. */
export function parseBytes(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)?\s*$/i.exec(v);
  if (!m) return undefined;
  const unit = SIZE_UNITS[(m[2] ?? 'b').toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Milliseconds as the largest unit that keeps them whole: 100 -> "100ms", 10000 -> "10s". */
export function formatDuration(ms: number): string {
  for (const unit of ['h', 'm', 's'] as const) if (ms > 0 && ms % DURATION_UNITS[unit]! === 0) return `${ms / DURATION_UNITS[unit]!}${unit}`;
  return `${ms}ms`;
}

/** Bytes as the largest binary unit that keeps them whole: 16777216 -> "16MiB". */
export function formatBytes(n: number): string {
  for (const unit of ['GiB', 'MiB', 'KiB'] as const) if (n > 0 && n % SIZE_UNITS[unit.toLowerCase()]! === 0) return `${n / SIZE_UNITS[unit.toLowerCase()]!}${unit}`;
  return `${n}`;
}

/** "host:port" (IPv6 as "[::1]:port") -> parts; undefined if malformed. */
export function parseHostPort(v: unknown): { host: string; port: number } | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}
