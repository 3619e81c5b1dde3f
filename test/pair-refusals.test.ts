import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { PairSupervisor } from '../packages/cli/src/pair/supervisor.js';
import { NODE_HEAP_FLAGS } from '../packages/cli/src/runtime/node-flags.js';
import { killAll } from './support/children.js';
import { coloBin, repo } from './support/tools.js';

/**
 * `colo pair` as a second user would start it (issue 24): a second pair in the same directory, or on ports a
 * running pair holds, refuses to start (exit 3) and writes nothing (it overwrote the first pair's key and token,
 * printed "up and protected" from the first pair's ports, and restart-looped); a node that cannot start is
 * restarted at growing intervals, not once a second. Ports 21760..21799.
 */
const children: ChildProcess[] = [];
const servers: Server[] = [];
let supervisor: PairSupervisor | undefined;

afterAll(async () => {
  await supervisor?.stop();
  for (const s of servers) await new Promise((r) => s.close(r));
  await killAll(children);
});

function pair(args: string[]): { child: ChildProcess; exit: Promise<number | null>; out: () => string; err: () => string } {
  const child = spawn(process.execPath, [coloBin, 'pair', '--json', '--memory', '4MiB', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  return { child, exit: new Promise((r) => child.once('exit', (code) => r(code))), out: () => out, err: () => err };
}

async function until(what: string, timeoutMs: number, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ports = (base: number) => ['--service-port', `${base}`, '--admin-port', `${base + 2}`, '--replication-port', `${base + 4}`];

test('a second colo pair in the same directory, or on a running pair\'s ports, exits 3 and writes nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'colo-refusal-'));
  const first = pair(['--dir', dir, ...ports(21760)]);
  await until('the first pair up', 60_000, () => first.out().includes('"ready":true'));
  const secrets = () => [readFileSync(join(dir, 'psk'), 'utf8'), readFileSync(join(dir, 'admin-token'), 'utf8'), readFileSync(join(dir, 'node-a.yaml'), 'utf8')];
  const before = secrets();

  const sameDir = pair(['--dir', dir, ...ports(21770)]);
  expect(await sameDir.exit).toBe(3);
  expect(sameDir.err()).toMatch(new RegExp(`a colo pair already runs in ${dir} \\(pid ${first.child.pid}\\)`));
  expect(sameDir.out()).toBe('');

  const samePorts = pair(['--dir', mkdtempSync(join(tmpdir(), 'colo-refusal-')), ...ports(21760)]);
  expect(await samePorts.exit).toBe(3);
  expect(samePorts.err()).toMatch(/127\.0\.0\.1:21760 is in use \(EADDRINUSE\)/);
  expect(samePorts.out()).toBe('');

  expect(secrets()).toEqual(before);
  expect(first.child.exitCode).toBe(null);
  first.child.kill('SIGINT');
  expect(await first.exit).toBe(0);
  // The directory is free again: its lock went with the pair.
  expect(existsSync(join(dir, 'pair.pid'))).toBe(false);
}, 120_000);

test('a node that cannot start is restarted at 1, 2, 4 ... s, not as fast as it fails', async () => {
  const base = 21780;
  const events: { at: number; line: string }[] = [];
  supervisor = new PairSupervisor({
    dir: mkdtempSync(join(tmpdir(), 'colo-backoff-')),
    mode: 'colo',
    memory: '4MiB',
    host: '127.0.0.1',
    servicePort: base,
    adminPort: base + 2,
    replicationPort: base + 4,
    dirtyRate: 0,
    extra: {},
    logLevel: 'info',
    coloCommand: [process.execPath, ...NODE_HEAP_FLAGS, coloBin],
  });
  supervisor.onEvent = (line) => events.push({ at: performance.now(), line });
  await supervisor.start();
  await until('node b started', 30_000, () => events.some((e) => /node-b: started as secondary/.test(e.line)));
  await until('node b running', 30_000, () => supervisor!.nodes[1].process?.pid !== undefined);
  // Node B's service port taken (a secondary only checks it at start): from now on B refuses to start (exit 3).
  const holder = createServer();
  servers.push(holder);
  await new Promise<void>((resolve, reject) => {
    holder.once('error', reject);
    holder.listen(base + 1, '127.0.0.1', () => resolve());
  });
  const t0 = performance.now();
  supervisor.nodes[1].process!.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 14_000));
  const after = events.filter((e) => e.at > t0);
  const starts = after.filter((e) => /node-b: started as secondary/.test(e.line)).length;
  const refused = after.filter((e) => /node-b: exited \(code 3\)/.test(e.line)).length;
  // Without a back-off: a start every ~0.6 s (about 20 in 14 s). With it: at once, then 1, 2, 4, 8 s apart.
  expect(refused).toBeGreaterThanOrEqual(3);
  expect(starts).toBeLessThanOrEqual(6);
  expect(after.map((e) => e.line).join('\n')).toMatch(/node-b: restarting in 2 s \(3 quick exits in a row; see .*node-b\.log\)/);
}, 60_000);
