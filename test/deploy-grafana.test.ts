import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { repo } from './support/tools.js';

// Every metric the dashboard queries must be one a node exports (docs/metrics.md is checked against the registry),
// so a renamed metric cannot leave an empty panel behind.
test('the Grafana dashboard only queries metrics that nodes export, and shows what operators watch', () => {
  const dashboard = JSON.parse(readFileSync(join(repo, 'deploy/grafana/colo-pair.json'), 'utf8')) as {
    panels: { title: string; targets: { expr: string }[] }[];
  };
  const documented = new Set(
    readFileSync(join(repo, 'docs/metrics.md'), 'utf8')
      .split('\n')
      .map((l) => l.split('|')[1]?.trim())
      .filter((n): n is string => !!n && n.startsWith('colo_')),
  );
  const used = new Set<string>();
  for (const p of dashboard.panels) {
    expect(p.targets.length, p.title).toBeGreaterThan(0);
    for (const t of p.targets) for (const m of t.expr.matchAll(/colo_[a-z_]+/g)) used.add(m[0].replace(/_(bucket|sum|count)$/, ''));
  }
  for (const name of used) expect(documented, name).toContain(name);
  // The process metrics (prom-client's collectors, not in the table) must be named in the document's prose.
  const prose = readFileSync(join(repo, 'docs/metrics.md'), 'utf8');
  const processMetrics = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/\b(?:nodejs|process)_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))));
  expect(processMetrics.length).toBeGreaterThan(0);
  for (const name of processMetrics) expect(prose, name).toMatch(new RegExp(`\`${name}(?![a-z0-9_])`));
  const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join('\n');
  for (const want of ['percentiles', 'heatmap', 'by reason', 'protection state', 'bandwidth', 'miscompare', 'collector']) expect(titles).toContain(want);
});
