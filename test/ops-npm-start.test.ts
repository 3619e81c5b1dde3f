import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { repo, tool } from './support/tools.js';

/**
 * The README's quick start, for real: `npm start -- <flags>` from the repository root builds and runs `colo
 * pair`; the banner appears; redis-cli talks to the printed service port; /metrics answers; Ctrl-C (SIGINT to
 * the whole process group, as a terminal sends it) stops both node processes.
 * Ports: service 21300/21301, admin 21302/21303, replication 21304/21305.
 */
const BASE = 21300;
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'colo-e2e-npm-start-'));
let npm: ChildProcess | undefined;
let stdout = '';
let stderr = '';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(what: string, timeoutMs: number, f: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

afterAll(async () => {
  // Whatever happened, nothing this test started outlives it.
  if (npm?.pid && npm.exitCode === null && npm.signalCode === null) {
    try {
      process.kill(-npm.pid, 'SIGKILL');
    } catch {}
  }
  for (const m of stderr.matchAll(/started as \w+ \(pid (\d+)/g)) {
    const pid = Number(m[1]);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('npm start (README quick start)', () => {
  test('starts a protected pair, serves redis-cli and /metrics, and Ctrl-C stops both nodes', async () => {
    const redisCli = tool('REDIS_CLI');
    const args = ['start', '--', '--service-port', String(BASE), '--admin-port', String(BASE + 2), '--replication-port', String(BASE + 4), '--dir', dir, '--memory', '16MiB'];
    // Its own process group, so SIGINT can go to npm, its shell and every node at once, as Ctrl-C does.
    npm = spawn('npm', args, { cwd: repo, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' } });
    npm.stdout!.on('data', (d) => (stdout += d));
    npm.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => npm!.on('exit', (code) => r(code)));

    await until('the banner "is up and protected"', 90_000, () => {
      if (npm!.exitCode !== null) throw new Error(`npm start exited with ${npm!.exitCode} before the banner\nstdout:\n${stdout}\nstderr:\n${stderr}`);
      return stdout.includes('is up and protected') && stdout.includes('Ctrl-C stops both nodes') ? true : undefined;
    });
    const svc = /service \(RESP\)\s+127\.0\.0\.1:(\d+)/.exec(stdout);
    expect(svc, stdout).not.toBeNull();
    const port = Number(svc![1]);
    expect(port).toBe(BASE);
    const pids = [...stderr.matchAll(/node-(a|b): started as (primary|secondary) \(pid (\d+)/g)].map((m) => ({ node: m[1], role: m[2], pid: Number(m[3]) }));
    // Node A first as primary, node B as its secondary; no restarts while starting up.
    expect(pids.map((p) => `${p.node}:${p.role}`), stderr).toEqual(['a:primary', 'b:secondary']);
    for (const p of pids) expect(alive(p.pid), stderr).toBe(true);

    // The README's commands, with the real redis-cli against the printed port.
    const cli = async (...a: string[]) => (await run(redisCli, ['-p', String(port), ...a], { timeout: 10_000 })).stdout.trim();
    const key = `greeting-${process.pid}`;
    expect(await cli('SET', key, 'hello')).toBe('OK');
    expect(await cli('GET', key)).toBe('hello');
    expect(await cli('INCR', `visits-${process.pid}`)).toBe('1');
    expect(await cli('INCR', `visits-${process.pid}`)).toBe('2');

    const metrics = /metrics\s+(http:\/\/\S+\/metrics)/.exec(stdout);
    expect(metrics, stdout).not.toBeNull();
    const curl = await run('curl', ['-sS', '--max-time', '5', metrics![1]!], { timeout: 10_000 });
    expect(curl.stdout).toMatch(/^colo_checkpoints_total\{reason="initial"\} 1$/m);
    expect(curl.stdout).toMatch(/^colo_protected 1$/m);

    // Ctrl-C: SIGINT to the whole foreground process group.
    process.kill(-npm.pid!, 'SIGINT');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    expect(code, `npm start did not exit within 20 s of SIGINT\nstderr:\n${stderr}`).not.toBe('hung');
    await until('both node processes to be gone', 10_000, () => (pids.every((p) => !alive(p.pid)) ? true : undefined));
    expect(stderr).toContain('colo pair: stopped');
    // Nothing listens any more on the pair's ports.
    await expect(run(redisCli, ['-p', String(port), 'PING'], { timeout: 5000 })).rejects.toThrow();
    const admin = await fetch(`http://127.0.0.1:${BASE + 2}/healthz`, { signal: AbortSignal.timeout(2000) }).then(() => 'answered', () => 'closed');
    expect(admin).toBe('closed');
  });
});
