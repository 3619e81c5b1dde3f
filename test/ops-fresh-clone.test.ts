import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { repo, tool } from './support/tools.js';

/**
 * The README's quick start, verbatim, as a new user meets it (issue 24, item 1): a fresh clone of this
 * repository, `npm ci` (no install-script warnings, and `npx colo` works at once), `npm start` with no flags
 * (the default ports), every command of the README's quick start and of the banner's "Try:" list run by a
 * shell in the clone exactly as printed, and Ctrl-C stopping both nodes.
 * Ports: the defaults (service 6380/6381, admin 9464/9465, replication 7800/7801); no other test uses them.
 */
const run = promisify(execFile);
const clone = mkdtempSync(join(tmpdir(), 'colo-e2e-clone-'));
const env = {
  ...process.env,
  TURBO_TELEMETRY_DISABLED: '1',
  COLO_ADMIN_TOKEN: '',
  COLO_ADMIN_TOKEN_FILE: '',
  COLO_NODES: '',
  // The README assumes redis-cli on PATH; npm test's tools step puts it there (or records where it is).
  PATH: `${dirname(tool('REDIS_CLI'))}:${process.env.PATH}`,
};
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

/** Runs one command line as a user types it, in the clone; resolves with its output, rejects on a non-zero exit. */
async function shell(line: string, timeoutMs = 120_000): Promise<string> {
  try {
    const r = await run('bash', ['-c', line], { cwd: clone, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return r.stdout;
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    throw new Error(`\`${line}\` failed (exit ${x.code}):\n${x.stdout}\n${x.stderr}\nnpm start stdout:\n${stdout}\nnpm start stderr:\n${stderr}`);
  }
}

/** The indented command lines of a text block (4 spaces), with their comments left to the shell. */
function commandLines(block: string): string[] {
  return block.split('\n').filter((l) => /^ {2,4}\S/.test(l)).map((l) => l.trim());
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
  rmSync(clone, { recursive: true, force: true });
});

describe('a fresh clone (README quick start)', () => {
  test('npm ci, npx colo, npm start, the README\'s and the banner\'s commands verbatim, Ctrl-C', async () => {
    await run('git', ['clone', '--quiet', repo, clone], { timeout: 60_000 });
    const ci = await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: clone, env, timeout: 300_000 });
    // No install script left unreviewed (package.json allowScripts).
    expect(`${ci.stdout}${ci.stderr}`).not.toMatch(/install-scripts|allowScripts/);
    // Before any build, the command exists and says what to do instead of "could not determine executable".
    const early = await run('npx', ['colo', '--version'], { cwd: clone, env, timeout: 60_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code?: number; stderr?: string }) => ({ code: e.code, stderr: e.stderr ?? '' }),
    );
    expect(early.code, early.stderr).toBe(3);
    expect(early.stderr).toContain('npm run build');

    const readme = readFileSync(join(clone, 'README.md'), 'utf8');
    const quick = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 5));
    expect(quick).toContain('npm ci && npm start');
    // `npm start` exactly as the README says (npm ci already ran): its own process group, so that SIGINT goes to
    // npm, its shell and every node at once, as Ctrl-C does.
    npm = spawn('npm', ['start'], { cwd: clone, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
    npm.stdout!.on('data', (d) => (stdout += d));
    npm.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => npm!.on('exit', (code) => r(code)));
    await until('the banner "is up and protected"', 240_000, () => {
      if (npm!.exitCode !== null) throw new Error(`npm start exited with ${npm!.exitCode} before the banner\nstdout:\n${stdout}\nstderr:\n${stderr}`);
      return stdout.includes('is up and protected') && stdout.includes('Ctrl-C stops both nodes') ? true : undefined;
    });
    const pids = [...stderr.matchAll(/node-(a|b): started as (primary|secondary) \(pid (\d+)/g)].map((m) => ({ node: m[1], role: m[2], pid: Number(m[3]) }));
    expect(pids.map((p) => `${p.node}:${p.role}`), stderr).toEqual(['a:primary', 'b:secondary']);

    expect((await shell('npx colo --version')).trim()).toBe('colo 0.1.0');

    // The README's commands after `npm start` and the banner's "Try:" list, verbatim. The drills crash the
    // primary (the service moves to the other port), so they run last, one after the other.
    const readmeCommands = commandLines(quick.slice(quick.indexOf('shows the initial')));
    const tryBlock = stdout.slice(stdout.indexOf('Try:'), stdout.indexOf('Ctrl-C stops both nodes'));
    const bannerCommands = commandLines(tryBlock);
    expect(readmeCommands.length).toBeGreaterThanOrEqual(5);
    expect(bannerCommands.length).toBeGreaterThanOrEqual(6);
    const isDrill = (l: string) => /colo drill/.test(l);
    const outputs = new Map<string, string>();
    for (const line of [...readmeCommands, ...bannerCommands].filter((l) => !isDrill(l))) outputs.set(line, await shell(line));
    expect(outputs.get(readmeCommands.find((l) => l.includes('SET greeting'))!)!.trim()).toBe('OK');
    expect(outputs.get(readmeCommands.find((l) => l.includes('/metrics'))!)!).toMatch(/^colo_protected 1$/m);
    expect(outputs.get(readmeCommands.find((l) => l.startsWith('npx colo status'))!)!).toMatch(/role +primary, protected/);
    expect(outputs.get(bannerCommands.find((l) => l.includes(' GET '))!)!.trim()).toBe('hello');
    expect(outputs.get(bannerCommands.find((l) => l.includes('colo checkpoint'))!)!).toMatch(/manual/);
    for (const line of [...readmeCommands, ...bannerCommands].filter(isDrill)) expect(await shell(line, 240_000)).toMatch(/PASSED/);

    // Ctrl-C: SIGINT to the whole foreground process group.
    const nodePids = [...stderr.matchAll(/started as \w+ \(pid (\d+)/g)].map((m) => Number(m[1]));
    process.kill(-npm.pid!, 'SIGINT');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    expect(code, `npm start did not exit within 20 s of SIGINT\nstderr:\n${stderr}`).not.toBe('hung');
    await until('every node process to be gone', 10_000, () => (nodePids.every((p) => !alive(p)) ? true : undefined));
    expect(stderr).toContain('colo pair: stopped');
    for (const port of [6380, 6381]) await expect(shell(`redis-cli -p ${port} PING`, 5000)).rejects.toThrow();
  }, 600_000);
});
