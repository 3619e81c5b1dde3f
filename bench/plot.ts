/**
 * Line charts as standalone SVG, for the benches' figures (docs/img/, shown in docs/performance.md): a person
 * sees where a checkpoint's pause goes without reading a table. Log-scaled axes (dirty pages span 100-50,000 and
 * pauses 0.05-200 ms), one line per series with its points marked, a legend, no dependency.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Series {
  name: string;
  points: [number, number][];
  /** Dashed line: a baseline or a comparison, not colo itself. */
  dashed?: boolean;
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
}

const W = 780;
const H = 440;
const M = { left: 70, right: 250, top: 40, bottom: 55 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#7f7f7f'];

/** Powers of ten covering [lo, hi], with 2 and 5 between them when the range is short. */
function ticks(lo: number, hi: number): number[] {
  const out: number[] = [];
  const steps = Math.log10(hi / lo) < 3 ? [1, 2, 5] : [1];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const s of steps) {
      const v = s * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

function label(v: number): string {
  if (v >= 1000) return `${v / 1000}k`;
  return Number(v.toPrecision(3)).toString();
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(c: Chart): string {
  const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && y > 0);
  if (pts.length === 0) throw new Error(`chart "${c.title}" has no positive points`);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  // The axes run from the 1-2-5 step at or below the smallest value to the one at or above the largest.
  const lower = (v: number) => {
    const e = 10 ** Math.floor(Math.log10(v));
    return [5, 2, 1].map((s) => s * e).find((t) => t <= v) ?? e;
  };
  const upper = (v: number) => {
    const e = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((s) => s * e).find((t) => t >= v) ?? 10 * e;
  };
  const x0 = lower(Math.min(...xs));
  const x1 = Math.max(upper(Math.max(...xs)), x0 * 10);
  const y0 = lower(Math.min(...ys));
  const y1 = Math.max(upper(Math.max(...ys)), y0 * 10);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = (v: number) => M.left + (Math.log10(v / x0) / Math.log10(x1 / x0)) * pw;
  const Y = (v: number) => M.top + ph - (Math.log10(v / y0) / Math.log10(y1 / y0)) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left + pw / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(c.title)}</text>`,
  ];
  for (const v of ticks(x0, x1)) {
    out.push(`<line x1="${X(v).toFixed(1)}" y1="${M.top}" x2="${X(v).toFixed(1)}" y2="${M.top + ph}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${X(v).toFixed(1)}" y="${M.top + ph + 16}" text-anchor="middle">${label(v)}</text>`);
  }
  for (const v of ticks(y0, y1)) {
    out.push(`<line x1="${M.left}" y1="${Y(v).toFixed(1)}" x2="${M.left + pw}" y2="${Y(v).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 6}" y="${(Y(v) + 4).toFixed(1)}" text-anchor="end">${label(v)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  c.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const p = s.points.filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    if (p.length > 1) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${dash} points="${p.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of p) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${colour}"><title>${esc(s.name)}: ${label(x)}, ${y.toPrecision(3)}</title></circle>`);
    const ly = M.top + 10 + i * 20;
    out.push(`<line x1="${M.left + pw + 12}" y1="${ly}" x2="${M.left + pw + 36}" y2="${ly}" stroke="${colour}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${M.left + pw + 42}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Writes a chart to `path` (folders made as needed); returns the path. */
export function writeChart(path: string, c: Chart): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, renderChart(c));
  return path;
}
