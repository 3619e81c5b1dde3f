import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { PAIR_HOLDER, startLocalArbiterServer, type LocalArbiterServer } from '@colo/coordinator';
import { getStatus, type NodeStatusDoc } from '../packages/cli/src/client/admin-client.js';
import { killAll } from './support/children.js';
import { runColo } from './support/cli.js';
import { redisCli } from './support/clients.js';
import { coloBin, repo } from './support/tools.js';

/**
 * Issue 24, item 2: the role at start comes from the arbiter's record and the node's state directory
 * (`node.role: auto`), never from a static `role: primary`, so the shipped unit can restart a node that crashed
 * or was fenced and it rejoins its pair as secondary by itself. Two nodes run exactly as deploy/systemd's
 * colo-node.service runs them (`colo node` with one configuration each, started again under the unit's own
 * Restart= and RestartPreventExitStatus=, read from the file), with the local arbiter: a new pair started at
 * once, the primary killed, the primary frozen past the heartbeat timeout and thawed (fenced, exit 1), every
 * acknowledged write still there after each; then the arbiter's record lost: refused (exit 10), not restarted,
 * until the operator's `colo claim`; then both hosts lost at once while protected, and `colo claim` again.
 * Ports 21900..21919. A restarted secondary, from its state directory, refuses a primary older than the epoch it saw.
 */
const BASE = 21900;
const dir = mkdtempSync(join(tmpdir(), 'colo-role-at-start-'));
const psk = join(dir, 'psk');
writeFileSync(psk, 'a-pre-shared-key-of-enough-length\n', { mode: 0o600 });
const socket = join(dir, 'arbiter.sock');
let arbiter: LocalArbiterServer | undefined;
const units: Unit[] = [];

afterAll(async () => {
  for (const u of units) u.disable();
  await killAll(units.flatMap((u) => u.processes));
  await arbiter?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The restart policy of deploy/systemd/colo-node.service, as systemd applies it. */
const unitText = readFileSync(join(repo, 'deploy/systemd/colo-node.service'), 'utf8');
const unitValue = (key: string) => unitText.split('\n').find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1).trim();
const preventedExits = (unitValue('RestartPreventExitStatus') ?? '').split(/\s+/).filter(Boolean).map(Number);
/** systemd's Restart=on-failure: an exit status other than 0 (and not prevented), or a signal other than the clean ones. */
function unitRestarts(code: number | null, signal: NodeJS.Signals | null): boolean {
  if (signal !== null) return !['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGPIPE'].includes(signal);
  return code !== 0 && !preventedExits.includes(code!);
}

/** One host's colo-node.service: starts `colo node` and starts it again as the unit's policy says. */
class Unit {
  readonly processes: ChildProcess[] = [];
  readonly exits: { code: number | null; signal: NodeJS.Signals | null; stderr: string }[] = [];
  private enabled = true;
  constructor(
    readonly id: string,
    readonly args: string[],
  ) {
    units.push(this);
  }
  get adminUrl(): string {
    return `http://127.0.0.1:${this.port(2)}`;
  }
  get servicePort(): number {
    return this.port(1);
  }
  private port(offset: number): number {
    return BASE + (this.id === 'a' ? 0 : 10) + offset;
  }
  get current(): ChildProcess {
    return this.processes.at(-1)!;
  }
  start(): void {
    const child = spawn(process.execPath, [coloBin, 'node', ...this.args], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, COLO_ADMIN_TOKEN: '', COLO_REPLICATION_PSK: '' } });
    this.processes.push(child);
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.once('exit', (code, signal) => {
      this.exits.push({ code, signal, stderr });
      // RestartSec, scaled down for the test.
      if (this.enabled && unitRestarts(code, signal)) setTimeout(() => this.enabled && this.start(), 200);
    });
  }
  disable(): void {
    this.enabled = false;
  }
  enable(): void {
    this.enabled = true;
  }
  state(): { node: string; role: string; epoch: number } {
    return JSON.parse(readFileSync(join(dir, this.id, 'state.json'), 'utf8')) as { node: string; role: string; epoch: number };
  }
}

function unit(id: 'a' | 'b'): Unit {
  const own = BASE + (id === 'a' ? 0 : 10);
  const other = BASE + (id === 'a' ? 10 : 0);
  return new Unit(id, [
    '--node-role', 'auto', '--node-id', id, '--node-state-dir', join(dir, id), '--guest-memory', '8MiB',
    '--replication-listen', `127.0.0.1:${own}`, '--replication-peer', `ws://127.0.0.1:${other}`, '--replication-psk-file', psk,
    '--service-listen', `127.0.0.1:${own + 1}`, '--admin-listen', `127.0.0.1:${own + 2}`,
    '--arbiter-kind', 'local', '--arbiter-endpoints', `unix:${socket}`, '--log-level', 'info',
  ]);
}

async function statusOf(u: Unit): Promise<NodeStatusDoc | undefined> {
  return getStatus(u.adminUrl, 1000).catch(() => undefined);
}

/** Waits until one node serves as protected primary and the other is its synchronised secondary. */
async function protectedPair(pair: Unit[], timeoutMs = 60_000): Promise<{ primary: Unit; secondary: Unit; epoch: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await Promise.all(pair.map(statusOf));
    const p = s.findIndex((x) => x?.role === 'primary' && x.protected);
    const q = 1 - p;
    if (p >= 0 && s[q]?.role === 'secondary' && s[q]!.protected) return { primary: pair[p]!, secondary: pair[q]!, epoch: s[p]!.epoch };
    if (Date.now() > deadline) throw new Error(`no protected pair within ${timeoutMs} ms: ${JSON.stringify(s.map((x) => x && { role: x.role, state: x.state, reason: x.reason }))}\n${pair.map((u) => `${u.id}: ${JSON.stringify(u.exits)}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const written: string[] = [];
function write(primary: Unit, n: number): void {
  for (let i = 0; i < n; i++) {
    const key = `k${written.length}`;
    expect(redisCli(primary.servicePort, 'SET', key, `v-${key}`)).toBe('OK');
    written.push(key);
  }
}
function everyWriteOn(primary: Unit): void {
  for (const key of written) expect(redisCli(primary.servicePort, 'GET', key), key).toBe(`v-${key}`);
}

async function exited(u: Unit, count: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (u.exits.length < count) {
    if (Date.now() > deadline) throw new Error(`${u.id} did not exit within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the shipped unit restarts on failure but not on a refusal or a configuration error', () => {
  expect(unitValue('Restart')).toBe('on-failure');
  expect(preventedExits.sort()).toEqual([10, 2]);
  expect(unitText).toMatch(/^StateDirectory=colo$/m);
});

test('node.role auto under the unit\'s policy: a new pair, a killed primary and a fenced one each rejoin as secondary, nothing acknowledged lost', async () => {
  arbiter = await startLocalArbiterServer(socket);
  const a = unit('a');
  const b = unit('b');
  // A new pair, both hosts started at once: the arbiter picks the primary.
  a.start();
  b.start();
  let pair = await protectedPair([a, b]);
  expect(arbiter.store.peek()).toEqual({ epoch: pair.epoch, holder: PAIR_HOLDER });
  write(pair.primary, 20);

  // The primary's process dies (SIGKILL): the secondary takes over; the unit starts the old one again, which
  // reads that the pair moved on and joins it as secondary.
  const killed = pair.primary;
  killed.current.kill('SIGKILL');
  pair = await protectedPair([a, b]);
  expect(pair.primary).not.toBe(killed);
  expect(killed.exits.at(-1)?.signal).toBe('SIGKILL');
  expect(killed.processes.length).toBe(2);
  everyWriteOn(pair.primary);
  write(pair.primary, 20);

  // The primary freezes past the heartbeat timeout and thaws: the secondary won the epoch, so the thawed node
  // loses its decision and stops (exit 1); the unit starts it again and it rejoins as secondary.
  const frozen = pair.primary;
  const exitsBefore = frozen.exits.length;
  frozen.current.kill('SIGSTOP');
  const deadline = Date.now() + 30_000;
  while ((await statusOf(pair.secondary))?.role !== 'primary') {
    if (Date.now() > deadline) throw new Error('the secondary did not take over from a frozen primary');
    await new Promise((r) => setTimeout(r, 100));
  }
  frozen.current.kill('SIGCONT');
  await exited(frozen, exitsBefore + 1);
  expect(frozen.exits.at(-1)).toMatchObject({ code: 1, signal: null });
  pair = await protectedPair([a, b]);
  expect(pair.primary).not.toBe(frozen);
  everyWriteOn(pair.primary);

  // Each node's state directory holds its role and the pair's epoch.
  expect(pair.primary.state()).toMatchObject({ node: pair.primary.id, role: 'primary', epoch: pair.epoch });
  expect(pair.secondary.state()).toMatchObject({ node: pair.secondary.id, role: 'secondary', epoch: pair.epoch });
  expect(frozen.processes.length).toBeGreaterThanOrEqual(2);

  // Stopped by the operator (SIGTERM: exit 0): not restarted.
  for (const u of [a, b]) {
    const n = u.exits.length;
    u.current.kill('SIGTERM');
    await exited(u, n + 1);
    expect(u.exits.at(-1)).toMatchObject({ code: 0 });
  }
  await new Promise((r) => setTimeout(r, 500));
  expect(a.processes.every((p) => p.exitCode !== null || p.signalCode !== null)).toBe(true);

  // The arbiter lost the pair's record (etcd's data gone): a node with a history refuses to start a new guest
  // beside one that may still serve: exit 10, and the unit does not start it again.
  arbiter.store.reset(null);
  const n = a.exits.length;
  const started = a.processes.length;
  a.start();
  await exited(a, n + 1);
  expect(a.exits.at(-1)!.code, a.exits.at(-1)!.stderr).toBe(10);
  expect(a.exits.at(-1)!.stderr).toContain('COLO_PAIR_HISTORY_LOST');
  await new Promise((r) => setTimeout(r, 500));
  expect(a.processes.length).toBe(started + 1);
  expect(arbiter.store.peek()).toBeNull();

  // The operator decides: `colo claim` shows the record and wants --yes; with it the next epoch (above what a
  // knew) is a's alone, a starts as primary with a new guest and b joins it.
  const knew = a.state().epoch;
  const asked = await runColo(['claim', ...a.args]);
  expect(asked.code, asked.stderr).toBe(2);
  expect(asked.stdout).toContain('pair record: no record');
  expect(asked.stderr).toMatch(/no node is recorded: make sure neither serves.*add --yes/);
  expect(arbiter.store.peek()).toBeNull();
  const claimed = await runColo(['claim', ...a.args, '--yes']);
  expect(claimed.code, claimed.stderr).toBe(0);
  expect(arbiter.store.peek()).toEqual({ epoch: knew + 1, holder: 'a' });
  a.enable();
  b.enable();
  a.start();
  b.start();
  pair = await protectedPair([a, b]);
  expect(pair.primary).toBe(a);
  written.length = 0;
  write(a, 10);

  // Both hosts lost at once while protected: the record stays the pair's, so both start again as secondaries and
  // wait for a primary that is gone. `colo claim` on b, b started again: b is primary, a joins it.
  for (const u of [a, b]) u.disable();
  await Promise.all([a, b].map(async (u) => {
    const n = u.exits.length;
    u.current.kill('SIGKILL');
    await exited(u, n + 1);
  }));
  expect(arbiter.store.peek()?.holder).toBe(PAIR_HOLDER);
  for (const u of [a, b]) {
    u.enable();
    u.start();
  }
  for (const deadline = Date.now() + 20_000; ; ) {
    const s = await Promise.all([a, b].map(statusOf));
    if (s.every((x) => x?.role === 'secondary')) break;
    if (Date.now() > deadline) throw new Error(`both nodes should wait as secondaries: ${JSON.stringify(s.map((x) => x && x.role))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // colo status says what the pair lacks, and the way out.
  const st = await runColo(['status', '--node', a.adminUrl, '--node', b.adminUrl]);
  expect(st.code, st.stdout).toBe(1);
  expect(st.stdout).toMatch(/NO PRIMARY: every node waits to join one[^]*colo claim/);
  const claimB = await runColo(['claim', ...b.args, '--yes']);
  expect(claimB.code, claimB.stderr).toBe(0);
  expect(claimB.stdout).toContain('pair record was: epoch');
  const bExits = b.exits.length;
  b.current.kill('SIGTERM');
  await exited(b, bExits + 1);
  b.start();
  pair = await protectedPair([a, b]);
  expect(pair.primary).toBe(b);
  expect(arbiter.store.peek()?.holder).toBe(PAIR_HOLDER);
}, 240_000);

test('the highest epoch a node has seen survives its restart: a primary older than a secondary\'s state is refused and stands down', async () => {
  const stale = join(dir, 'stale');
  const seen = join(dir, 'seen');
  // What a node that was secondary at epoch 9 left in its state directory.
  const { NodeStateFile } = await import('@colo/coordinator');
  new NodeStateFile(seen, 'c').record('secondary', 9);
  const primary = new Unit('p', ['--node-role', 'primary', '--node-id', 'p', '--node-state-dir', stale, '--guest-memory', '4MiB', '--replication-listen', `127.0.0.1:${BASE + 15}`, '--replication-psk-file', psk, '--service-listen', `127.0.0.1:${BASE + 16}`, '--admin-listen', `127.0.0.1:${BASE + 17}`]);
  primary.disable();
  primary.start();
  for (const deadline = Date.now() + 20_000; (await getStatus(`http://127.0.0.1:${BASE + 17}`, 1000).catch(() => undefined))?.listening == null; ) {
    if (Date.now() > deadline) throw new Error(`the primary did not come up: ${JSON.stringify(primary.exits)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const secondary = new Unit('c', ['--node-role', 'secondary', '--node-id', 'c', '--node-state-dir', seen, '--guest-memory', '4MiB', '--guest-prealloc', 'false', '--replication-peer', `ws://127.0.0.1:${BASE + 15}`, '--replication-psk-file', psk, '--service-listen', `127.0.0.1:${BASE + 18}`, '--admin-listen', `127.0.0.1:${BASE + 19}`]);
  secondary.disable();
  secondary.start();
  await exited(secondary, 1);
  expect(secondary.exits[0]!.code, secondary.exits[0]!.stderr).toBe(3);
  // The primary sees the higher epoch in the secondary's hello and refuses it; it is the stale one, and stands
  // down (exit 1) rather than serve on.
  expect(secondary.exits[0]!.stderr).toMatch(/this primary is at epoch 0, the peer has seen 9: stepping down \(LINK_REFUSED\)\n$/);
  await exited(primary, 1);
  expect(primary.exits[0]!.code, primary.exits[0]!.stderr).toBe(1);
  expect(JSON.parse(readFileSync(join(seen, 'state.json'), 'utf8'))).toMatchObject({ epoch: 9 });
}, 60_000);

test('a state directory holding another node\'s state is refused at start (exit 10, COLO_STATE_CORRUPT), whatever the role', async () => {
  const { NodeStateFile } = await import('@colo/coordinator');
  const other = join(dir, 'copied');
  new NodeStateFile(other, 'host-b').record('primary', 4);
  for (const role of ['primary', 'secondary']) {
    const u = new Unit('x', ['--node-role', role, '--node-id', 'host-a', '--node-state-dir', other, '--guest-memory', '4MiB', '--guest-prealloc', 'false', '--replication-listen', `127.0.0.1:${BASE + 5}`, '--replication-peer', `ws://127.0.0.1:${BASE + 15}`, '--replication-psk-file', psk, '--service-listen', `127.0.0.1:${BASE + 6}`, '--admin-listen', `127.0.0.1:${BASE + 7}`]);
    u.start();
    await exited(u, 1);
    expect(u.exits[0]!.code, u.exits[0]!.stderr).toBe(10);
    expect(u.exits[0]!.stderr).toMatch(/belongs to node "host-b", not "host-a".*COLO_STATE_CORRUPT/);
    expect(u.processes).toHaveLength(1);
  }
}, 60_000);

test('colo claim with an arbiter that does not answer: exit 3, the arbiter\'s code; without one: exit 2', async () => {
  const gone = await runColo(['claim', '--node-id', 'a', '--arbiter-kind', 'local', '--arbiter-endpoints', `unix:${join(dir, 'no-such.sock')}`, '--yes']);
  expect(gone.code, gone.stderr).toBe(3);
  expect(gone.stderr).toMatch(/did not answer.*\(ARBITER_UNREACHABLE\)\n$/);
  const none = await runColo(['claim', '--node-id', 'a', '--yes']);
  expect(none.code, none.stderr).toBe(2);
});
