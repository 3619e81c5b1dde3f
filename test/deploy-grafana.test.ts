import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
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

interface Ref {
  type?: string;
  uid?: string;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  templating: { list: { name: string; type: string; query: unknown; datasource?: Ref; includeAll?: boolean; allValue?: string }[] };
  panels: { id: number; title: string; type: string; datasource?: Ref; gridPos: { x: number; y: number; w: number; h: number }; targets: { expr: string; refId: string; datasource?: Ref }[] }[];
}

/**
 * No Grafana server is available from this machine's registries (npm, Debian), so the dashboard's JSON model is
 * checked here the way file provisioning takes it: as it is, with no import step to fill `__inputs`. A
 * `${DS_...}` left in it (the export format) resolves to no data source and every panel is empty.
 */
test('the dashboard provisions from a file as it is: a datasource variable, no import inputs, a sound layout', () => {
  const text = readFileSync(join(repo, 'deploy/grafana/colo-pair.json'), 'utf8');
  const d = JSON.parse(text) as Dashboard & Record<string, unknown>;
  expect(d).not.toHaveProperty('__inputs');
  expect(text).not.toMatch(/\$\{DS_/);
  expect(d.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
  expect(d.title.length).toBeGreaterThan(0);
  expect(d.schemaVersion).toBeGreaterThanOrEqual(36);

  const vars = new Map(d.templating.list.map((v) => [v.name, v]));
  expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
  // Every data source reference, wherever it is, is the variable's.
  const refs: Ref[] = [];
  const walk = (o: unknown): void => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === 'object') {
      for (const [k, v] of Object.entries(o)) {
        if (k === 'datasource') refs.push(v as Ref);
        else walk(v);
      }
    }
  };
  walk(d.panels);
  walk(d.templating.list.filter((v) => v.type !== 'datasource'));
  expect(refs.length).toBeGreaterThan(d.panels.length);
  for (const r of refs) expect(r).toEqual({ type: 'prometheus', uid: '${datasource}' });

  // The pair variable lists pairs from the scrape targets (up), so a pair whose nodes are all down stays in it,
  // and All matches any pair (not only the ones that exported a metric in the time range).
  const pair = vars.get('pair')!;
  expect(JSON.stringify(pair.query)).toContain('up{job=\\"colo\\"}');
  expect(pair).toMatchObject({ includeAll: true, allValue: '.*' });

  // Variables the queries use exist (or are Grafana's own).
  for (const p of d.panels) {
    for (const t of p.targets) {
      for (const m of t.expr.matchAll(/\$(\w+)/g)) if (!m[1]!.startsWith('__')) expect(vars.has(m[1]!), `${p.title}: $${m[1]}`).toBe(true);
    }
  }

  // Layout: unique panel ids, refIds unique per panel, 24 columns, no two panels overlapping.
  expect(new Set(d.panels.map((p) => p.id)).size).toBe(d.panels.length);
  for (const p of d.panels) {
    expect(new Set(p.targets.map((t) => t.refId)).size, p.title).toBe(p.targets.length);
    const g = p.gridPos;
    for (const v of [g.x, g.y, g.w, g.h]) expect(Number.isInteger(v) && v >= 0, p.title).toBe(true);
    expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
  }
  for (const [i, a] of d.panels.entries()) {
    for (const b of d.panels.slice(i + 1)) {
      const overlap = a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w && a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h;
      expect(overlap, `${a.title} / ${b.title}`).toBe(false);
    }
  }

  // A stalled pair shows: the top row reads `up`, so nodes that are down are 0 (red), not gone.
  const top = d.panels.filter((p) => p.gridPos.y === 0);
  expect(top.some((p) => p.targets.some((t) => t.expr.includes('up{job="colo"')))).toBe(true);
  expect(top.some((p) => p.targets.some((t) => t.expr.includes('colo_service_up')))).toBe(true);
});

test('the provisioning files point Grafana at the dashboard and a Prometheus data source', () => {
  const dashboards = parseYaml(readFileSync(join(repo, 'deploy/grafana/provisioning/dashboards/colo.yaml'), 'utf8')) as {
    apiVersion: number;
    providers: { name: string; type: string; options: { path: string } }[];
  };
  expect(dashboards.apiVersion).toBe(1);
  expect(dashboards.providers).toHaveLength(1);
  expect(dashboards.providers[0]).toMatchObject({ type: 'file', options: { path: expect.stringMatching(/^\//) } });
  const sources = parseYaml(readFileSync(join(repo, 'deploy/grafana/provisioning/datasources/prometheus.yaml'), 'utf8')) as {
    apiVersion: number;
    datasources: { type: string; url: string; isDefault?: boolean }[];
  };
  expect(sources.apiVersion).toBe(1);
  expect(sources.datasources).toEqual([expect.objectContaining({ type: 'prometheus', isDefault: true, url: expect.stringMatching(/^https?:\/\//) })]);
});
