import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { collectProcessMetrics, createNodeMetrics, type NodeTotals } from '../../src/observability/metrics.js';

const repo = resolve(import.meta.dirname, '../../../..');

function toolPath(name: string): string {
  const envFile = join(repo, '.tools/env');
  if (!existsSync(envFile)) throw new Error(`.tools/env is missing: run 'npm run tools' to install ${name}`);
  const line = readFileSync(envFile, 'utf8').split('\n').find((l) => l.startsWith(`${name}=`));
  const path = line?.slice(name.length + 1);
  if (!path || !existsSync(path)) throw new Error(`${name} not found (${path}): run 'npm run tools'`);
  return path;
}

/** Rows of the table in docs/metrics.md: name -> { type, labels }. */
function documentedMetrics(): Map<string, { type: string; labels: string[] }> {
  const md = readFileSync(join(repo, 'docs/metrics.md'), 'utf8');
  const rows = new Map<string, { type: string; labels: string[] }>();
  for (const line of md.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 6 || !cells[1]?.startsWith('colo_')) continue;
    rows.set(cells[1], { type: cells[2]!, labels: cells[4]!.split(',').map((l) => l.trim()).filter(Boolean) });
  }
  return rows;
}

describe('metrics', () => {
  test('docs/metrics.md lists exactly the registry, with types and labels', async () => {
    const m = createNodeMetrics({ nodeId: 'n1', mode: 'colo', version: '0.0.0' });
    const registered = new Map<string, { type: string; labels: string[] }>();
    for (const metric of await m.registry.getMetricsAsJSON()) {
      const labels = new Set<string>();
      for (const v of metric.values) for (const k of Object.keys(v.labels)) if (k !== 'le') labels.add(k);
      // label names come from the declaration, so metrics with no samples yet still count
      const declared = (m.registry.getSingleMetric(metric.name) as unknown as { labelNames?: string[] }).labelNames ?? [];
      for (const l of declared) labels.add(l);
      registered.set(metric.name, { type: String(metric.type), labels: [...labels].sort() });
    }
    const documented = documentedMetrics();
    expect([...documented.keys()].sort()).toEqual([...registered.keys()].sort());
    for (const [name, doc] of documented) {
      expect({ name, ...registered.get(name) }).toEqual({ name, type: doc.type, labels: [...doc.labels].sort() });
    }
  });

  test('running totals owned elsewhere are shown as they are at each scrape, every series from the first', async () => {
    const m = createNodeMetrics({ nodeId: 'n1', mode: 'colo', version: '0.0.0' });
    const value = async (name: string, labels: Record<string, string>) =>
      (await m.registry.getSingleMetric(name)!.get()).values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
    // Before a source: zeros, every series present (increase() sees the first count).
    for (const result of ['match', 'miscompare', 'stale']) expect(await value('colo_output_compare_total', { result })).toBe(0);
    const totals: NodeTotals = {
      replicationBytes: { sent: { replication: 10, proxy: 1 }, received: { replication: 0, proxy: 7 } },
      linkReads: { ring: 3, fallback: 0, copied: 1 },
      outputCompare: { match: 5, miscompare: 1, stale: 0 },
      heldOutputBytes: 42,
      retainedInputEvents: 2,
      serviceUp: true,
      linksUp: ['replication'],
      sync: { round: 2, remainingPages: 10 },
    };
    m.readTotalsFrom(() => totals);
    expect(await value('colo_output_compare_total', { result: 'match' })).toBe(5);
    expect(await value('colo_output_compare_total', { result: 'stale' })).toBe(0);
    expect(await value('colo_replication_bytes_total', { direction: 'received', channel: 'proxy' })).toBe(7);
    expect(await value('colo_link_reads_total', { into: 'ring' })).toBe(3);
    expect(await value('colo_held_output_bytes', {})).toBe(42);
    expect(await value('colo_service_up', {})).toBe(1);
    expect(await value('colo_link_up', { channel: 'replication' })).toBe(1);
    expect(await value('colo_link_up', { channel: 'proxy' })).toBe(0);
    expect(await value('colo_sync_round', {})).toBe(2);
    expect(await value('colo_sync_remaining_pages', {})).toBe(10);
    // The source moves on (by more than one step between scrapes): the scrape shows it as it is, twice alike.
    totals.outputCompare = { match: 500, miscompare: 3, stale: 1 };
    totals.replicationBytes.sent.replication = 1_000_000;
    totals.heldOutputBytes = 0;
    for (let i = 0; i < 2; i++) {
      expect(await value('colo_output_compare_total', { result: 'match' })).toBe(500);
      expect(await value('colo_output_compare_total', { result: 'stale' })).toBe(1);
      expect(await value('colo_replication_bytes_total', { direction: 'sent', channel: 'replication' })).toBe(1_000_000);
      expect(await value('colo_held_output_bytes', {})).toBe(0);
    }
    expect(await m.registry.metrics()).toMatch(/^colo_output_compare_total\{result="miscompare"\} 3$/m);
  });

  test('the counters alerts take increase() of exist at 0 for every label value from the start (a first failover is an increase)', async () => {
    const m = createNodeMetrics({ nodeId: 'n1', mode: 'colo', version: '0.0.0' });
    const text = await m.registry.metrics();
    for (const reason of ['manual', 'primary_lost']) expect(text).toMatch(new RegExp(`^colo_failovers_total\\{reason="${reason}"\\} 0$`, 'm'));
    for (const outcome of ['won', 'lost']) expect(text).toMatch(new RegExp(`^colo_arbiter_decisions_total\\{purpose="continue",outcome="${outcome}"\\} 0$`, 'm'));
    expect(text).toMatch(/^colo_checkpoints_total\{reason="miscompare"\} 0$/m);
    expect(text).toMatch(/^colo_checkpoint_resent_pages_total 0$/m);
    expect(text).toMatch(/^colo_peer_losses_total\{cause="LINK_HEARTBEAT_TIMEOUT"\} 0$/m);
    expect(text).toMatch(/^colo_link_refusals_total\{code="LINK_AUTH_FAILED"\} 0$/m);
    expect(text).toMatch(/^colo_hook_runs_total\{hook="promote",result="failed"\} 0$/m);
    // The build info's node id is not `node`, the scrape config's target label.
    expect(text).toMatch(/^colo_build_info\{version="0\.0\.0",mode="colo",node_id="n1"\} 1$/m);
  });

  test('promtool check metrics finds nothing to complain about', async () => {
    const promtool = toolPath('PROMTOOL');
    const m = createNodeMetrics({ nodeId: 'n1', mode: 'colo', version: '0.0.0' });
    m.checkpointDuration.observe({ reason: 'periodic' }, 0.004);
    m.heartbeatRtt.observe(0.0003);
    const dir = mkdtempSync(join(tmpdir(), 'colo-metrics-'));
    const file = join(dir, 'metrics.txt');
    writeFileSync(file, await m.registry.metrics());
    // promtool reads the exposition on stdin and exits non-zero (printing the problems) on lint findings
    const out = execFileSync('sh', ['-c', `"${promtool}" check metrics < "${file}" 2>&1; echo "exit=$?"`]).toString();
    expect(out.trim()).toBe('exit=0');
  });

  test('with the process metrics too (colo node): promtool passes, collector pauses have sub-millisecond buckets', async () => {
    const promtool = toolPath('PROMTOOL');
    const m = createNodeMetrics({ nodeId: 'n1', mode: 'colo', version: '0.0.0' });
    collectProcessMetrics(m.registry);
    // Make garbage until a collection has been observed (the observer reports asynchronously).
    let text = '';
    for (let round = 0; round < 40 && !text.includes('nodejs_gc_duration_seconds_bucket'); round++) {
      for (let i = 0; i < 50; i++) Buffer.alloc(1 << 20).fill(i);
      await new Promise((r) => setTimeout(r, 50));
      text = await m.registry.metrics();
    }
    expect(text).toMatch(/^nodejs_gc_duration_seconds_bucket\{le="0.0005",kind="[a-z]+"\} \d+$/m);
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    const dir = mkdtempSync(join(tmpdir(), 'colo-metrics-'));
    const file = join(dir, 'metrics.txt');
    writeFileSync(file, text);
    const out = execFileSync('sh', ['-c', `"${promtool}" check metrics < "${file}" 2>&1; echo "exit=$?"`]).toString();
    // prom-client names three of its gauges with a _total suffix (its naming, kept for dashboards that know
    // it); promtool's only findings must be those three.
    const findings = out.trim().split('\n').filter((l) => !l.startsWith('exit='));
    expect(findings.sort()).toEqual(
      ['handles', 'requests', 'resources'].map((r) => `nodejs_active_${r}_total non-counter metrics should not have "_total" suffix`),
    );
  });
});
