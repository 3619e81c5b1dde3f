/**
 * Benchmarks report ratios against a baseline measured in the same run on the same machine (memcpy, raw
 * TCP throughput, the unprotected guest), never absolute timings checked as pass/fail.
 */
export interface BenchRow {
  /** What was measured, e.g. 'decode PAGE_DATA (256 MiB)'. */
  name: string;
  /** The measured value, in `unit`. */
  value: number;
  unit: string;
  /** The same-run baseline's name and value, and value/baseline (or the ratio the target is stated in). */
  baseline?: string;
  ratio?: number;
  /** The target, stated as text, and whether this run met it. */
  target?: string;
  met?: boolean;
}

export interface BenchSuite {
  name: string;
  run(log: (line: string) => void): Promise<BenchRow[]>;
}

export function formatRows(rows: BenchRow[]): string {
  const head = '| measurement | value | baseline | ratio | target | met |\n|---|---|---|---|---|---|';
  const body = rows.map(
    (r) =>
      `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.baseline ?? ''} | ${r.ratio === undefined ? '' : r.ratio.toFixed(2)} | ${r.target ?? ''} | ${r.met === undefined ? '' : r.met ? 'yes' : 'NO'} |`,
  );
  return [head, ...body].join('\n');
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
