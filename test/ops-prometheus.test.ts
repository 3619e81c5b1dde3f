import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { getStatus, postAction, type NodeStatusDoc } from '../packages/cli/src/client/admin-client.js';
import { RespClient } from '../packages/cli/src/client/resp-client.js';
import { startPair, type TestPair } from './support/pair.js';
import { startPrometheus, waitFor, type TestPrometheus } from './support/prometheus.js';
import { repo } from './support/tools.js';

/**
 * A real Prometheus, configured from deploy/prometheus/ (targets rewritten to this test's ports), scrapes a real
 * pair; what it stores must agree with what the nodes say about themselves in /status.
 * Ports: service 21000/21001, admin 21002/21003, replication 21004/21005, Prometheus 21010.
 */
const BASE = 21000;
const PROM_PORT = BASE + 10;
const REASONS = ['initial', 'miscompare', 'stale', 'periodic', 'manual', 'output_bound'] as const;
const ALERTS = [
  'ColoArbiterDecisionLost',
  'ColoArbiterUnreachable',
  'ColoCheckpointLatencyHigh',
  'ColoCheckpointStale',
  'ColoFailover',
  'ColoHeartbeatRttHigh',
  'ColoMiscompareStorm',
  'ColoNoPrimary',
  'ColoNodeDown',
  'ColoPrimaryNotServing',
  'ColoSecondaryMemoryDrift',
  'ColoTwoPrimaries',
  'ColoUnprotected',
];
const MANUAL = 6;
const TIMES = 4;

let pair: TestPair;
let prom: TestPrometheus;
/** Pause of every manual checkpoint this test took, as the primary reported it. */
const manualPauses: number[] = [];
let primaryId = '';
let primaryUrl = '';

beforeAll(async () => {
  [pair, prom] = await Promise.all([
    // No periodic checkpoints (max_interval 10 min): every checkpoint after the initial one is one this test
    // asked for, so a failure points at a request. (The agreement check below tolerates periodic ones anyway.)
    startPair({ basePort: BASE, extra: { checkpoint: { max_interval: '10m' } } }),
    startPrometheus({ port: PROM_PORT, targets: [`127.0.0.1:${BASE + 2}`, `127.0.0.1:${BASE + 3}`] }),
  ]);
  const p = await pair.waitProtected(60_000);
  primaryId = p.status.nodeId;
  primaryUrl = pair.adminUrls[p.index];
});

afterAll(async () => {
  await Promise.all([pair?.stop(), prom?.stop()]);
});

/** Bucket upper bounds of a histogram as the node exports them. */
/** One sample of a counter from a node's /metrics text (0 if absent). */
async function counterValue(adminUrl: string, series: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function bucketBounds(adminUrl: string, metric: string): Promise<number[]> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const les = new Set<number>();
  for (const m of text.matchAll(new RegExp(`^${metric}_bucket\\{le="([^"]+)"`, 'gm'))) if (m[1] !== '+Inf') les.add(Number(m[1]));
  return [...les].sort((a, b) => a - b);
}

/**
 * Reads /status, waits for a Prometheus scrape of the node that started after that read, queries `exprs`,
 * then reads /status again. Counters only go up, so when both reads agree the scrape saw exactly those counts.
 * Retries (a periodic checkpoint may land in between) until they agree.
 */
async function stableScrape(exprs: string[]): Promise<{ status: NodeStatusDoc; results: Awaited<ReturnType<TestPrometheus['query']>>[] }> {
  return waitFor('a Prometheus scrape between two equal /status reads', 30_000, async () => {
    const before = await getStatus(primaryUrl, 2000);
    const t0 = Date.now() / 1000;
    await waitFor('a scrape after the /status read', 10_000, async () => {
      const r = await prom.query(`timestamp(colo_checkpoints_total{node="${primaryId}",reason="manual"})`);
      return r.length === 1 && Number(r[0]!.value[1]) > t0 ? true : undefined;
    }, 200);
    const results = await Promise.all(exprs.map((e) => prom.query(e)));
    const after = await getStatus(primaryUrl, 2000);
    return JSON.stringify(before.checkpoints) === JSON.stringify(after.checkpoints) ? { status: after, results } : undefined;
  }, 100);
}

describe('a real Prometheus scraping a real pair', () => {
  test('loads the colo alert rules from deploy/prometheus/colo-alerts.yml', async () => {
    const data = await waitFor('rule groups loaded', 15_000, async () => {
      const d = await prom.api<{ groups: { name: string; rules: { type: string; name: string; health: string }[] }[] }>('rules');
      return d.groups.length > 0 ? d : undefined;
    });
    const alerts = data.groups.flatMap((g) => g.rules.filter((r) => r.type === 'alerting'));
    expect(alerts.map((r) => r.name).sort()).toEqual(ALERTS);
    expect(data.groups.map((g) => g.name)).toEqual(['colo']);
    // Evaluated at least once against real data without an error (e.g. a many-to-many match).
    await waitFor('every rule evaluated healthy', 15_000, async () => {
      const d = await prom.api<{ groups: { rules: { name: string; health: string; lastError?: string }[] }[] }>('rules');
      const rules = d.groups.flatMap((g) => g.rules);
      const bad = rules.filter((r) => r.health !== 'ok');
      if (bad.some((r) => r.health === 'err')) throw new Error(`rule errors: ${JSON.stringify(bad)}`);
      return bad.length === 0 ? true : undefined;
    });
  });

  test('on the healthy protected pair the outage rules select nothing, from the series the nodes export', async () => {
    await waitFor('both nodes scraped, one primary serving', 20_000, async () => {
      const [up, serving] = await Promise.all([prom.query('up{job="colo"} == 1'), prom.query('colo_service_up == 1')]);
      return up.length === 2 && serving.length === 1 ? true : undefined;
    });
    // The outage rules' expressions select nothing on a healthy pair, against the series the nodes really export
    // (a rule that matched nothing ever, e.g. a misspelt label, would pass this too: the promtool tests say they fire).
    const rules = (await prom.api<{ groups: { rules: { name: string; query: string }[] }[] }>('rules')).groups.flatMap((g) => g.rules);
    for (const name of ['ColoNoPrimary', 'ColoNodeDown', 'ColoPrimaryNotServing', 'ColoCheckpointStale', 'ColoTwoPrimaries', 'ColoUnprotected', 'ColoFailover']) {
      const rule = rules.find((r) => r.name === name)!;
      expect(await prom.query(rule.query), name).toEqual([]);
    }
    // The series they read are there: one primary, both nodes up. they read are there: one primary serving, both nodes up.
    expect((await prom.query('sum by (pair) (colo_role{role="primary"})')).map((s) => s.value[1])).toEqual(['1']);
    expect((await prom.query('colo_service_up == 1')).length).toBe(1);
  });

  test('every Grafana panel query runs on this Prometheus, as Grafana sends it, and the top row shows the pair', async () => {
    const dashboard = JSON.parse(readFileSync(join(repo, 'deploy/grafana/colo-pair.json'), 'utf8')) as { panels: { title: string; gridPos: { y: number }; targets: { expr: string }[] }[] };
    // Grafana substitutes All as the variable's allValue and $__rate_interval as a range of at least 4 scrapes.
    const asSent = (expr: string) => expr.replaceAll('$pair', '.*').replaceAll('$__rate_interval', '1m');
    for (const p of dashboard.panels) for (const t of p.targets) await prom.query(asSent(t.expr)); // throws on a bad query
    const top = dashboard.panels.filter((p) => p.gridPos.y === 0).flatMap((p) => p.targets.map((t) => asSent(t.expr)));
    const values = await waitFor('the top row has data', 20_000, async () => {
      const all = await Promise.all(top.map((e) => prom.query(e)));
      return all.every((r) => r.length > 0) ? all : undefined;
    });
    // Nodes up: both 1; primaries serving in the pair: 1.
    expect(values.map((r) => r.map((s) => s.value[1]).sort())).toEqual([['1', '1'], ['1']]);
  });

  test('scrapes both nodes with the shipped labels', async () => {
    const up = await waitFor('both targets up', 20_000, async () => {
      const r = await prom.query('up{job="colo"}');
      return r.length === 2 && r.every((s) => s.value[1] === '1') ? r : undefined;
    });
    expect(up.map((s) => s.metric.node).sort()).toEqual(['node-a', 'node-b']);
    expect(up.every((s) => s.metric.pair === 'pair-1')).toBe(true);
    const roles = await prom.query('colo_role == 1');
    expect(Object.fromEntries(roles.map((s) => [s.metric.node, s.metric.role]))).toEqual({ [primaryId]: 'primary', [primaryId === 'node-a' ? 'node-b' : 'node-a']: 'secondary' });
  });

  test("each node exports its process's metrics: collector pauses by kind, event-loop lag, CPU", async () => {
    for (const node of ['node-a', 'node-b']) {
      const gc = await waitFor(`${node}'s collector pauses scraped`, 20_000, async () => {
        const r = await prom.query(`nodejs_gc_duration_seconds_count{node="${node}"}`);
        return r.length > 0 ? r : undefined;
      });
      expect(gc.every((s) => ['minor', 'major', 'incremental', 'weakcb'].includes(s.metric.kind!))).toBe(true);
      // A node that has synchronised a guest has collected garbage at least once.
      expect(gc.reduce((n, s) => n + Number(s.value[1]), 0)).toBeGreaterThan(0);
      for (const series of ['nodejs_eventloop_lag_seconds', 'process_cpu_seconds_total']) {
        expect(await prom.query(`${series}{node="${node}"}`), `${node} ${series}`).toHaveLength(1);
      }
    }
  });

  test('checkpoints by reason and the pause quantile agree with /status', async () => {
    // Manual checkpoints through the admin API, each pause cross-checked with /status.
    for (let i = 0; i < MANUAL; i++) {
      const answer = (await postAction(primaryUrl, 'checkpoint', pair.token, 10_000).catch(async (e: Error) => {
        const all = await Promise.all(pair.adminUrls.map((u) => getStatus(u, 1000).catch(() => undefined)));
        throw new Error(`manual checkpoint ${i + 1} of ${MANUAL} failed: ${e.message}; pair now: ${all.map((s) => s && `${s.nodeId} ${s.role} ${s.state} epoch ${s.epoch}`).join(' | ')}; logs in ${pair.dir}`);
      })) as { ok: boolean; checkpoint: { seq: number; reason: string; pauseSeconds: number } };
      expect(answer.ok).toBe(true);
      expect(answer.checkpoint.reason).toBe('manual');
      const s = await getStatus(primaryUrl);
      const lc = s.lastCheckpoint as NonNullable<NodeStatusDoc['lastCheckpoint']> & { pauseSeconds: number };
      if (lc.seq === answer.checkpoint.seq) expect(lc.pauseSeconds).toBeCloseTo(answer.checkpoint.pauseSeconds, 9);
      manualPauses.push(answer.checkpoint.pauseSeconds);
    }
    // TIME replies differ between the two guests: each is a COLO miscompare, which forces a checkpoint. Half on
    // one long connection, half on a fresh connection each (as redis-cli does: connect, command, close).
    const port = (await getStatus(primaryUrl)).service!.port;
    const client = await RespClient.connect('127.0.0.1', port);
    try {
      for (let i = 0; i < TIMES; i++) {
        const r = await client.command('TIME');
        expect(Array.isArray(r) && r.length === 2).toBe(true);
        const once = await RespClient.connect('127.0.0.1', port);
        const r2 = await once.command('TIME').finally(() => once.close());
        expect(Array.isArray(r2) && r2.length === 2).toBe(true);
      }
    } finally {
      client.close();
    }

    // Counters live in the node process: if the pair failed over meanwhile, the primary's counts are gone.
    const now = await Promise.all(pair.adminUrls.map((u) => getStatus(u, 1000).catch(() => undefined)));
    expect(pair.sup.nodes.map((n) => n.restarts), `the pair failed over during the checkpoints (restarts ${pair.sup.nodes.map((n) => n.restarts).join('/')}): ${now.map((s) => s && `${s.nodeId} ${s.role} ${s.state} epoch ${s.epoch}`).join(' | ')}; logs in ${pair.dir}`).toEqual([0, 0]);
    const byReason = `colo_checkpoints_total{node="${primaryId}"}`;
    const count = `colo_checkpoint_duration_seconds_count{node="${primaryId}",reason="manual"}`;
    const q50 = `histogram_quantile(0.5, sum by (le) (colo_checkpoint_duration_seconds_bucket{node="${primaryId}",reason="manual"}))`;
    const q99 = `histogram_quantile(0.99, sum by (le) (colo_checkpoint_duration_seconds_bucket{node="${primaryId}",reason="manual"}))`;
    const { status, results } = await stableScrape([byReason, count, q50, q99]);
    const [counts, manualCount, p50, p99] = results as [Awaited<ReturnType<TestPrometheus['query']>>, ...Awaited<ReturnType<TestPrometheus['query']>>[]];

    const fromProm = Object.fromEntries(counts.map((s) => [s.metric.reason!, Number(s.value[1])]));
    const fromStatus = Object.fromEntries(REASONS.map((r) => [r, status.checkpoints?.[r]]));
    expect(fromProm).toEqual(fromStatus);
    expect(fromStatus.manual).toBe(MANUAL);
    expect(fromStatus.initial).toBe(1);
    expect(fromStatus.miscompare, 'every TIME reply differs between the guests, so each forces a miscompare checkpoint').toBeGreaterThanOrEqual(1);
    expect(Number(manualCount![0]!.value[1])).toBe(MANUAL);

    // The quantiles must lie between the bucket below the smallest pause and the bucket holding the largest.
    const bounds = await bucketBounds(primaryUrl, 'colo_checkpoint_duration_seconds');
    expect(bounds.length).toBeGreaterThan(3);
    const lo = [0, ...bounds].filter((b) => b < Math.min(...manualPauses)).at(-1)!;
    const hi = bounds.find((b) => b >= Math.max(...manualPauses));
    expect(hi, `largest manual pause ${Math.max(...manualPauses)} s is beyond the last bucket`).toBeDefined();
    console.log(`manual pauses ${manualPauses.map((p) => (p * 1000).toFixed(2)).join(', ')} ms; Prometheus p50 ${(Number(p50![0]!.value[1]) * 1000).toFixed(2)} ms, p99 ${(Number(p99![0]!.value[1]) * 1000).toFixed(2)} ms (bucket bounds ${lo}..${hi} s); counts ${JSON.stringify(fromProm)}`);
    for (const q of [p50, p99]) {
      const v = Number(q![0]!.value[1]);
      expect(v, `quantile ${v} s vs manual pauses ${manualPauses.join(', ')} s`).toBeGreaterThanOrEqual(lo);
      expect(v).toBeLessThanOrEqual(hi!);
    }
  });

  test('the pair is still one protected primary after the miscompare checkpoints (ColoTwoPrimaries stays quiet)', async () => {
    // Give a broken pair time to show it: a secondary that dropped the link promotes itself within ~1 s.
    await new Promise((r) => setTimeout(r, 2000));
    const primaries = await waitFor('a fresh scrape of colo_role', 10_000, async () => {
      const r = await prom.query('sum by (pair) (colo_role{role="primary"})');
      const t = await prom.query('timestamp(colo_role{role="primary"})');
      return t.length === 2 && t.every((s) => Number(s.value[1]) > Date.now() / 1000 - 1.5) ? r : undefined;
    });
    const all = await Promise.all(pair.adminUrls.map((u) => getStatus(u)));
    const summary = all.map((s) => `${s.nodeId}: ${s.role} ${s.state} epoch ${s.epoch} failovers ${String(s.failovers)}${s.lastError ? ` (${JSON.stringify(s.lastError)})` : ''}`).join('; ') + `; restarts ${pair.sup.nodes.map((n) => n.restarts).join('/')}; logs in ${pair.dir}`;
    expect(Number(primaries[0]!.value[1]), `nodes acting as primary, per Prometheus; /status: ${summary}`).toBe(1);
    // A miscompare is a checkpoint, never a failover: nobody promoted, nobody was restarted (colo pair would
    // fence a second primary and restart it, which hides a split brain from the role check alone).
    expect(all.map((s) => s.epoch), summary).toEqual([0, 0]);
    expect(all.map((s) => s.failovers), summary).toEqual([0, 0]);
    expect(pair.sup.nodes.map((n) => n.restarts), summary).toEqual([0, 0]);
    expect(all.map((s) => s.role), summary).toEqual(['primary', 'secondary']);
    expect(all.every((s) => s.protected), summary).toBe(true);
  });

  test('replication bytes: what the primary sent on the main stream, the secondary counts as received', async () => {
    const secondaryUrl = pair.adminUrls.find((u) => u !== primaryUrl)!;
    const sent = await counterValue(primaryUrl, 'colo_replication_bytes_total{direction="sent",channel="replication"}');
    const received = await counterValue(secondaryUrl, 'colo_replication_bytes_total{direction="received",channel="replication"}');
    console.log(`main stream: primary sent ${sent} bytes in completed checkpoints, secondary received ${received}`);
    // At least the initial synchronisation's whole guest; the two agree up to headers and control records.
    expect(sent).toBeGreaterThan(1024 * 1024);
    expect(Math.abs(received - sent)).toBeLessThan(1024 * 1024);
  });

  test("link reads: the secondary's replication stream went through its reused read memory", async () => {
    const secondaryUrl = pair.adminUrls.find((u) => u !== primaryUrl)!;
    const into = async (url: string, place: string) => counterValue(url, `colo_link_reads_total{into="${place}"}`);
    const [ring, fallback, copied] = await Promise.all(['ring', 'fallback', 'copied'].map((p) => into(secondaryUrl, p)));
    const received = await counterValue(secondaryUrl, 'colo_replication_bytes_total{direction="received",channel="replication"}');
    console.log(`secondary's replication reads: ring ${ring}, fallback ${fallback}, copied ${copied} (${received} stream bytes)`);
    // The initial synchronisation alone is megabytes in reads of at most 1 MiB: many ring reads, and a ring of
    // 16 MiB under an apply that keeps up needs fresh memory for few of them.
    expect(ring).toBeGreaterThan(received / (1024 * 1024));
    expect(fallback).toBeLessThan(ring);
    // The primary reads no replication stream: its series are exported, at zero.
    expect(await Promise.all(['ring', 'fallback', 'copied'].map((p) => into(primaryUrl, p)))).toEqual([0, 0, 0]);
  });
});
