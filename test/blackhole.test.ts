import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { redisBenchmark, redisCli } from './support/clients.js';
import { runColo } from './support/cli.js';
import { coloBin, repo } from './support/tools.js';

/**
 * The seed's Remus blackhole (`xl remus -b`): `colo pair --mode remus --blackhole` runs one node that checkpoints
 * into nothing. Clients are served (output held and released at each checkpoint as in a pair), every checkpoint
 * is measured as a real pair's are, and nothing ever says protected: not the status, not `colo status`, not the
 * metrics; a drill refuses. Ports 21600.. (service 21600, admin 21602, replication 21604).
 */
const BASE = 21600;
const admin = `http://127.0.0.1:${BASE + 2}`;
let pair: ChildProcess | undefined;
let banner: { ready: boolean; blackhole: boolean; protected: boolean; service: { host: string; port: number } };

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'colo-blackhole-'));
  const child = spawn(
    process.execPath,
    [coloBin, 'pair', '--mode', 'remus', '--blackhole', '--json', '--dir', dir, '--service-port', String(BASE), '--admin-port', String(BASE + 2), '--replication-port', String(BASE + 4), '--memory', '16MiB'],
    { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  pair = child;
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  banner = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 60 s: ${err}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      }
    });
    child.once('exit', (code) => reject(new Error(`colo pair exited (${code}): ${err}`)));
  });
}, 90_000);

afterAll(async () => {
  if (!pair || pair.exitCode !== null) return;
  const exited = new Promise((r) => pair!.once('exit', r));
  pair.kill('SIGTERM');
  const timer = setTimeout(() => pair?.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
});

test('a blackhole node serves clients, checkpoints periodically as a Remus primary does, and never says protected', async () => {
  expect(banner).toMatchObject({ ready: true, blackhole: true, protected: false });
  const port = banner.service.port;
  expect(redisCli(port, 'SET', 'k', 'v')).toBe('OK');
  expect(redisCli(port, 'GET', 'k')).toBe('v');
  const before = await getStatus(admin);
  // Output waits for the next checkpoint (every 200 ms by default), as in a pair: 8 clients, 40 replies a second.
  const bench = await redisBenchmark(port, ['-t', 'set', '-n', '200', '-c', '8', '-q']);
  expect(bench.rps.SET).toBeGreaterThan(0);
  const s = await getStatus(admin);
  expect(s).toMatchObject({ role: 'primary', mode: 'remus', blackhole: true, protected: false, peer: 'blackhole' });
  expect(s.state).toMatch(/^protected/); // the statechart's own name for "checkpointing"; status says otherwise
  // Periodic checkpoints ran while the clients did (every 200 ms by default), each with pages and bytes.
  expect((s.checkpoints?.periodic ?? 0) - (before.checkpoints?.periodic ?? 0)).toBeGreaterThan(0);
  expect(s.lastCheckpoint!.bytes).toBeGreaterThan(0);

  const metrics = await (await fetch(`${admin}/metrics`)).text();
  expect(metrics).toMatch(/^colo_protected(\{[^}]*\})? 0$/m);
  // The same metrics as a pair's primary: the pause per checkpoint, and the bytes that went nowhere.
  const pauses = /^colo_checkpoint_duration_seconds_count\{[^}]*reason="periodic"[^}]*\} (\d+)$/m.exec(metrics);
  expect(Number(pauses?.[1])).toBeGreaterThan(0);
  expect(Number(/^colo_checkpoint_bytes_sum(\{[^}]*\})? ([\d.e+]+)$/m.exec(metrics)?.[2])).toBeGreaterThan(0);
  // Compression (on by default) runs too: its cost is part of what a blackhole measures.
  expect(Number(/^colo_checkpoint_delta_pages_total(\{[^}]*\})? ([\d.e+]+)$/m.exec(metrics)?.[2])).toBeGreaterThan(0);

  const status = await runColo(['status', '--node', admin]);
  expect(status.code, status.stderr).toBe(0);
  expect(status.stdout).toMatch(/role {8}primary, blackhole: not protected/);
  expect(status.stdout).not.toMatch(/, protected/);
}, 120_000);

test('a drill refuses a blackhole node (exit 2) and crashes nothing', async () => {
  const pid = (await getStatus(admin)).nodeId;
  const dir = mkdtempSync(join(tmpdir(), 'colo-blackhole-token-'));
  writeFileSync(join(dir, 'token'), 'x'.repeat(32));
  const drill = await runColo(['drill', '--node', admin, '--token-file', join(dir, 'token'), '--json'], 30_000);
  expect(drill.code, `${drill.stdout}${drill.stderr}`).toBe(2);
  const report = JSON.parse(drill.stdout) as { ok: boolean; refused?: string; steps: { name: string; ok: boolean; detail: string }[] };
  expect(report).toMatchObject({ ok: false, refused: 'blackhole' });
  expect(report.steps[0]!.detail).toMatch(/blackhole mode: its checkpoints go nowhere/);
  // The node is still there, serving: nothing was crashed.
  expect((await getStatus(admin)).nodeId).toBe(pid);
  expect(redisCli(banner.service.port, 'GET', 'k')).toBe('v');
}, 60_000);

test('blackhole is refused outside a Remus primary, with the setting named', async () => {
  const colo = await runColo(['pair', '--blackhole']);
  expect(colo.code).toBe(2);
  expect(colo.stderr).toMatch(/--blackhole is a Remus mode/);
  const secondary = await runColo(['secondary', '--node-mode', 'remus', '--blackhole', '--replication-peer', 'ws://127.0.0.1:1', '--print-config']);
  expect(secondary.code).toBe(2);
  expect(secondary.stderr).toMatch(/remus\.blackhole.*for a primary/);
  const coloMode = await runColo(['primary', '--blackhole', '--print-config']);
  expect(coloMode.code).toBe(2);
  expect(coloMode.stderr).toMatch(/remus\.blackhole.*node\.mode to remus/);
  // A Remus blackhole primary needs no replication key (it has no link).
  const ok = await runColo(['primary', '--node-mode', 'remus', '--blackhole', '--print-config']);
  expect(ok.code, ok.stderr).toBe(0);
  expect(JSON.parse(ok.stdout)).toMatchObject({ remus: { blackhole: true } });
});
