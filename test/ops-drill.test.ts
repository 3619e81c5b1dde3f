import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { formatDrillReport, runDrill, type DrillReport } from '../packages/cli/src/drill/drill.js';
import { RespClient } from '../packages/cli/src/client/resp-client.js';
import { startPair, type TestPair } from './support/pair.js';
import { runColo as colo } from './support/cli.js';

/**
 * `colo drill` against a real supervised pair: the built CLI crashes the primary, measures the RTO, verifies the
 * ledger on the new primary and waits for re-protection; and a drill whose ledger loses a key on purpose fails
 * and says which key is MISSING.
 * Ports: service 21100/21101, admin 21102/21103, replication 21104/21105.
 */
const BASE = 21100;
let pair: TestPair;

beforeAll(async () => {
  pair = await startPair({ basePort: BASE });
  await pair.waitProtected(60_000);
});

afterAll(async () => {
  await pair?.stop();
});

/** Runs the built CLI; resolves with exit code and output. Killed (and failed) after `timeoutMs`. */

describe('colo drill against a real pair', () => {
  test('passes: RTO measured, every acknowledged key verified, re-protected', async () => {
    const keys = 300;
    const r = await colo(
      ['drill', '--node', pair.adminUrls[0], '--node', pair.adminUrls[1], '--token-file', join(pair.dir, 'admin-token'), '--keys', String(keys), '--json', '--failover-timeout', '10', '--reprotect-timeout', '40'],
      70_000,
    );
    const report = JSON.parse(r.stdout) as DrillReport;
    const steps = report.steps.map((s) => `${s.ok ? 'ok' : 'FAIL'} ${s.name}: ${s.detail}`).join('\n');
    expect(r.code, `${steps}\n${r.stderr}; logs in ${pair.dir}`).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.steps.map((s) => s.name)).toEqual(['pair is protected', 'write ledger', 'crash the primary', 'secondary takes over and serves', 'verify ledger', 're-protected']);
    expect(report.steps.every((s) => s.ok)).toBe(true);
    expect(report.primaryBefore).toBeDefined();
    expect(report.primaryAfter).toBeDefined();
    expect(report.primaryAfter).not.toBe(report.primaryBefore);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    // Loopback, heartbeat timeout 1 s by default: a takeover well within the drill's own 10 s bound.
    expect(report.rtoSeconds).toBeLessThan(10);
    expect(report.ledger).toMatchObject({ written: keys, acknowledged: keys, verified: keys, missing: [], wrong: [] });
    expect(report.ledger.counter!.found).toBeGreaterThanOrEqual(report.ledger.counter!.acknowledged);
    expect(report.ledger.counter!.acknowledged).toBe(keys);
    console.log(`drill RTO ${report.rtoSeconds!.toFixed(3)} s; steps:\n${steps}`);
  });

  test('a ledger key that goes missing fails the drill, naming the key', async () => {
    // The supervisor restarted the crashed node as a secondary: the pair must be protected again first.
    await pair.waitProtected(60_000);
    let deleted = '';
    const progress: string[] = [];
    const report = await runDrill(
      {
        nodes: [...pair.adminUrls],
        token: pair.token,
        keys: 50,
        protectTimeoutMs: 30_000,
        failoverTimeoutMs: 10_000,
        reprotectTimeoutMs: 40_000,
        waitReprotect: true,
      },
      {
        async afterLedger({ service, keys }) {
          deleted = keys[Math.floor(keys.length / 2)]!;
          const c = await RespClient.connect(service.host, service.port);
          try {
            expect(await c.command('DEL', deleted)).toBe(1);
          } finally {
            c.close();
          }
        },
      },
      (line) => progress.push(line),
    );
    const text = formatDrillReport(report);
    expect(deleted).toMatch(/^drill:[0-9a-f]{8}:\d+$/);
    expect(report.ok, text).toBe(false);
    const verify = report.steps.find((s) => s.name === 'verify ledger');
    expect(verify, text).toBeDefined();
    expect(verify!.ok).toBe(false);
    expect(verify!.detail).toContain('1 acknowledged keys MISSING');
    expect(verify!.detail).toContain(deleted);
    expect(report.ledger.missing).toEqual([deleted]);
    expect(report.ledger.verified).toBe(49);
    expect(report.ledger.wrong).toEqual([]);
    // The drill stops at the failed step: no re-protection step is reported as if it had passed.
    expect(report.steps.at(-1)!.name).toBe('verify ledger');
    expect(text).toContain('FAILED');
    expect(text).toMatch(/FAIL +verify ledger .*MISSING.*drill:/);
    expect(text).toContain('1 missing');
    expect(progress.some((l) => l.startsWith('verify ledger: FAILED'))).toBe(true);
  });

  test('colo drill --restart-secondary: the secondary crashes, the primary serves on, the pair re-protects, nothing is lost', async () => {
    await pair.waitProtected(60_000);
    const before = await pair.primary();
    const r = await colo(['drill', '--restart-secondary', '--node', pair.adminUrls[0], '--node', pair.adminUrls[1], '--token-file', pair.sup.tokenFile, '--keys', '100', '--json'], 120_000);
    const report = JSON.parse(r.stdout) as DrillReport;
    expect(r.code, formatDrillReport(report)).toBe(0);
    expect(report).toMatchObject({ kind: 'restart-secondary', ok: true, primaryBefore: before.status.nodeId });
    expect(report.steps.map((s) => s.name)).toEqual(['pair is protected', 'write ledger', 'crash the secondary', 'primary serves on and the pair re-protects', 'verify ledger']);
    expect(report.reprotectSeconds).toBeGreaterThan(0);
    expect(report.whileRestarting!.acknowledged).toBeGreaterThan(0);
    // Every write of both phases acknowledged and read back from the same primary.
    expect(report.ledger.verified).toBe(report.ledger.acknowledged);
    expect(report.ledger.acknowledged).toBe(100 + report.whileRestarting!.acknowledged);
    expect((await pair.primary()).status.nodeId).toBe(before.status.nodeId);
    console.log(`restart-secondary drill: re-protected after ${report.reprotectSeconds!.toFixed(3)} s, ${report.whileRestarting!.acknowledged} writes meanwhile, longest wait ${(report.whileRestarting!.longestWaitSeconds * 1000).toFixed(0)} ms`);
  }, 150_000);
});
