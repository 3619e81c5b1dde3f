import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { killAll } from './support/children.js';
import { coloBin, repo } from './support/tools.js';

/**
 * The promote and demote hooks as a `colo node` runs them (issue 24): promote each time a node starts serving as
 * primary (at start, at a promotion), demote each time it stops (stopped, fenced); their environment carries what
 * the hook needs and none of the node's secrets. GET /primary answers 200 only on the serving primary; POST /crash
 * is off unless enabled. Ports 21800..21819.
 */
const PSK = 'service-hooks-psk-0123456789abcdef';
const TOKEN = 'service-hooks-admin-token-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'colo-hooks-'));
const children: ChildProcess[] = [];

afterAll(async () => {
  await killAll(children);
});

/** Each hook run appends one line: which hook, the node, the epoch, the address, and what secrets it could see. */
function hookCommand(file: string): string {
  return `echo "$COLO_HOOK $COLO_NODE_ID epoch=$COLO_EPOCH service=$COLO_SERVICE_ADDRESS psk=\${COLO_REPLICATION_PSK:-none} token=\${COLO_ADMIN_TOKEN:-none} other=\${MY_DB_PASSWORD:-none} path=\${PATH:+set}" >> ${file}`;
}

function node(role: 'primary' | 'secondary', id: string, base: number, peer?: number): { child: ChildProcess; admin: string; hooks: string; exit: Promise<number | null>; log: () => string } {
  const hooks = join(dir, `${id}.hooks`);
  const child = spawn(
    process.execPath,
    [
      coloBin, role,
      '--node-id', id,
      '--guest-memory', '4MiB',
      '--replication-listen', `127.0.0.1:${base}`,
      '--service-listen', `127.0.0.1:${base + 1}`,
      '--admin-listen', `127.0.0.1:${base + 2}`,
      '--heartbeat-interval', '50ms',
      '--heartbeat-timeout', '400ms',
      '--service-promote-hook', hookCommand(hooks),
      '--service-demote-hook', hookCommand(hooks),
      ...(peer ? ['--replication-peer', `ws://127.0.0.1:${peer}`] : []),
    ],
    { cwd: repo, env: { ...process.env, COLO_REPLICATION_PSK: PSK, COLO_ADMIN_TOKEN: TOKEN, MY_DB_PASSWORD: 'hunter2' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  return { child, admin: `http://127.0.0.1:${base + 2}`, hooks, exit: new Promise((r) => child.once('exit', (code) => r(code))), log: () => log };
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(probe()).catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);
const status = (url: string) => fetch(`${url}/primary`).then((r) => r.status);

test('promote at start and at a promotion, demote at a stop; no secret in a hook\'s environment; /primary; /crash off', async () => {
  const a = node('primary', 'a', 21800);
  await until('a promoted (hook ran)', () => (lines(a.hooks).length > 0 ? true : undefined));
  expect(lines(a.hooks)).toEqual(['promote a epoch=0 service=127.0.0.1:21801 psk=none token=none other=none path=set']);

  const b = node('secondary', 'b', 21810, 21800);
  await until('the pair protected', async () => ((await getStatus(b.admin, 1000)).protected ? true : undefined));
  expect(await status(a.admin)).toBe(200);
  expect(await status(b.admin)).toBe(503);
  // The secondary is ready (synchronised), not primary: a load balancer asks /primary.
  expect((await fetch(`${b.admin}/readyz`)).status).toBe(200);
  expect(lines(b.hooks)).toEqual([]);
  // A drill's crash is off on a node that did not enable it (admin.allow_crash), even with the token.
  const crash = await fetch(`${a.admin}/crash`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  expect(crash.status).toBe(403);
  expect(a.child.exitCode).toBe(null);

  // The node's metrics of the same: both links up; the initial synchronisation's pages counted (the whole guest).
  const metrics = async (url: string) => (await fetch(`${url}/metrics`)).text();
  const value = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  const before = await metrics(a.admin);
  expect(value(before, 'colo_link_up{channel="replication"}')).toBe(1);
  expect(value(before, 'colo_link_up{channel="proxy"}')).toBe(1);
  expect(value(before, 'colo_hook_runs_total{hook="promote",result="ok"}')).toBe(1);
  expect((await getStatus(a.admin, 1000)).checkpoints?.initial).toBe(1);
  expect(value(before, 'colo_checkpoint_pages_sum')).toBeGreaterThanOrEqual(1024); // 4 MiB: 1,024 pages in round 1

  a.child.kill('SIGKILL'); // a dead host runs no demote hook: the new primary's promote takes the address over
  await until('b promoted (hook ran)', () => (lines(b.hooks).length > 0 ? true : undefined));
  expect(lines(b.hooks)).toEqual(['promote b epoch=1 service=127.0.0.1:21811 psk=none token=none other=none path=set']);
  expect(await status(b.admin)).toBe(200);
  const after = await metrics(b.admin);
  expect(value(after, 'colo_failover_duration_seconds_count')).toBe(1);
  expect(value(after, 'colo_failover_duration_seconds_sum')).toBeGreaterThan(0);
  expect(value(after, 'colo_peer_losses_total{cause="LINK_CLOSED"}') + value(after, 'colo_peer_losses_total{cause="LINK_HEARTBEAT_TIMEOUT"}')).toBe(1);
  expect(value(after, 'colo_link_up{channel="replication"}')).toBe(0);
  expect(value(after, 'colo_hook_runs_total{hook="promote",result="ok"}')).toBe(1);
  // The failover in b's log: the loss once at warn, with its cause's code, no stack trace; 'remote' for addresses.
  const logLines = b.log().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(logLines.filter((l) => l.level === 'warn' && /lost/.test(String(l.msg))).map((l) => l.msg)).toEqual(['primary lost: asking the arbiter before taking over']);
  expect(b.log()).not.toContain('"stack"');
  expect(b.log()).not.toContain('"remoteAddress"');
  // A secondary with another key is refused at the handshake, and counted by code.
  const impostor = spawn(process.execPath, [coloBin, 'secondary', '--node-id', 'x', '--guest-memory', '4MiB', '--replication-listen', '127.0.0.1:21815', '--service-listen', '127.0.0.1:21816', '--admin-listen', '127.0.0.1:21817', '--replication-peer', 'ws://127.0.0.1:21810'], {
    cwd: repo,
    env: { ...process.env, COLO_REPLICATION_PSK: 'another-key-entirely-0123456789' },
    stdio: 'ignore',
  });
  children.push(impostor);
  await until('the refusal counted', async () => (value(await metrics(b.admin), 'colo_link_refusals_total{code="LINK_AUTH_FAILED"}') >= 1 ? true : undefined));

  b.child.kill('SIGTERM');
  expect(await b.exit).toBe(0);
  expect(lines(b.hooks)).toEqual([
    'promote b epoch=1 service=127.0.0.1:21811 psk=none token=none other=none path=set',
    'demote b epoch=1 service=127.0.0.1:21811 psk=none token=none other=none path=set',
  ]);
}, 90_000);
