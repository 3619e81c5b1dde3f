import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { PAIR_HOLDER, startLocalArbiterServer, type LocalArbiterServer } from '@colo/coordinator';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { runColo } from './support/cli.js';
import { startPair, type TestPair } from './support/pair.js';

/**
 * Issue 20, the local arbiter as an operator meets it: `colo pair` records the protected pair in it and every
 * node's /status shows it; a stale former primary started as primary is refused with exit 10 and never serves.
 * Ports: 21300.. (pair: service +0/+1, admin +2/+3, replication +4/+5; the refused node +10..).
 */
const BASE = 21300;
const dir = mkdtempSync(join(tmpdir(), 'colo-e2e-arbiter-'));
let server: LocalArbiterServer | undefined;
let pair: TestPair | undefined;
afterAll(async () => {
  await pair?.stop();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('colo pair records the protected pair in its local arbiter; /status shows the arbiter on both nodes', async () => {
  pair = await startPair({ basePort: BASE, mode: 'colo', memory: '16MiB' });
  const { index } = await pair.waitProtected(60_000);
  const deadline = Date.now() + 10_000;
  while (pair.sup.arbiterRecord()?.holder !== PAIR_HOLDER && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(pair.sup.arbiterRecord()).toEqual({ epoch: 0, holder: PAIR_HOLDER });
  const [p, s] = await Promise.all([getStatus(pair.adminUrls[index], 2000), getStatus(pair.adminUrls[1 - index]!, 2000)]);
  for (const st of [p, s]) {
    expect(st.arbiter).toMatchObject({ kind: 'local', where: `unix:${pair.sup.arbiterSocket}`, reachable: true, pending: null, lastError: null });
  }
  expect(p.arbiter).toMatchObject({ lastDecision: { purpose: 'protect', epoch: 0, won: true } });
  // colo status says it in one line; /metrics carries it for Prometheus.
  const st = await runColo(['status', '--node', pair.adminUrls[0], '--node', pair.adminUrls[1]]);
  expect(st.code, st.stderr).toBe(0);
  expect(st.stdout).toMatch(/arbiter +local; reachable; last: protect at epoch 0 won in [\d.]+ ms/);
  const metrics = await (await fetch(`${pair.adminUrls[index]}/metrics`)).text();
  expect(metrics).toMatch(/^colo_arbiter_info\{kind="local"\} 1$/m);
  expect(metrics).toMatch(/^colo_arbiter_reachable 1$/m);
  expect(metrics).toMatch(/^colo_arbiter_pending 0$/m);
  expect(metrics).toMatch(/^colo_arbiter_decisions_total\{purpose="protect",outcome="won"\} 1$/m);
  expect(metrics).toMatch(/^colo_arbiter_decisions_total\{purpose="register",outcome="won"\} 1$/m);
  expect(metrics).toMatch(/^colo_arbiter_decision_seconds_count\{purpose="protect"\} 1$/m);
});

test('a stale former primary started as primary is refused by the arbiter: exit 10, it never serves', async () => {
  const socket = join(dir, 'arbiter.sock');
  server = await startLocalArbiterServer(socket);
  // The pair moved on: the other node took over at epoch 3 and is protected again.
  server.store.reset({ epoch: 3, holder: PAIR_HOLDER });
  const psk = join(dir, 'psk');
  writeFileSync(psk, 'a-pre-shared-key-of-enough-length\n', { mode: 0o600 });
  const r = await runColo([
    'node', '--node-role', 'primary', '--node-id', 'node-stale', '--guest-memory', '1MiB',
    '--replication-psk-file', psk, '--replication-listen', `127.0.0.1:${BASE + 10}`,
    '--service-listen', `127.0.0.1:${BASE + 11}`, '--admin-listen', `127.0.0.1:${BASE + 12}`,
    '--arbiter-kind', 'local', '--arbiter-endpoints', `unix:${socket}`,
  ]);
  expect(r.code, r.stderr).toBe(10);
  expect(r.stderr).toContain('COLO_ARBITER_REFUSED');
  expect(r.stderr).toMatch(/stale former primary/);
  expect(server.store.peek()).toEqual({ epoch: 3, holder: PAIR_HOLDER });
});

test('colo pair refuses an arbiter it cannot use: etcd without --etcd, an unknown kind (exit 2)', async () => {
  for (const args of [['--arbiter', 'etcd'], ['--arbiter', 'zookeeper'], ['--etcd', 'http://127.0.0.1:2379']]) {
    const r = await runColo(['pair', '--dir', join(dir, 'unused'), ...args]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--arbiter|--etcd/);
  }
});
