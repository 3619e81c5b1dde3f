import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { SETTINGS, flagName } from '../packages/cli/src/config/schema.js';
import { commands } from '../packages/cli/src/registry.js';
import { NODE_HEAP_FLAGS } from '../packages/cli/src/runtime/node-flags.js';
import { runColo } from './support/cli.js';
import { killAll } from './support/children.js';
import { coloBin, repo } from './support/tools.js';

/**
 * The CLI's conventions (issue 24): exit codes as each command's --help documents them, no stack trace for an
 * operator's mistake, a closed pipe ends a command quietly, `colo help CMD`, `--version`, every setting's flag in
 * the node commands' help, shell completion. Ports 21740..21749.
 */
const PSK = 'cli-conventions-psk-0123456789';
let node: ChildProcess | undefined;

afterAll(async () => {
  await killAll([node]);
});

/** `colo ARGS` with the pre-shared key in its environment (runColo clears only the admin variables). */
function coloWithKey(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [coloBin, ...args], { cwd: repo, env: { ...process.env, COLO_REPLICATION_PSK: PSK }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const STACK_FRAME = /^\s+at .+\(.*:\d+:\d+\)$|\\n\s+at /m;

describe('colo CLI conventions', () => {
  test('--version, -V and version print the version; help CMD is that command\'s help', async () => {
    for (const v of ['--version', '-V', 'version']) {
      const r = await runColo([v]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^colo \d+\.\d+\.\d+/);
    }
    const h = await runColo(['help', 'status']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: colo status /);
    expect((await runColo(['help', 'stream', 'verify'])).stdout).toMatch(/^Usage: colo stream verify/);
    expect((await runColo(['help', 'nosuch'])).code).toBe(2);
  });

  test('every command documents its exit codes in its help', async () => {
    for (const c of commands) {
      const r = await runColo([...c.path, '--help']);
      expect(r.code, c.path.join(' ')).toBe(0);
      expect(r.stdout, c.path.join(' ')).toMatch(/Exit codes: 0 /);
    }
  });

  test('the node commands\' help lists every setting\'s flag', async () => {
    for (const cmd of ['node', 'primary', 'secondary']) {
      const r = await runColo([cmd, '--help']);
      for (const s of SETTINGS) expect(r.stdout, `${cmd}: ${s.path}`).toMatch(new RegExp(`^  --${flagName(s.path)} `, 'm'));
    }
  });

  test('an operator\'s mistake: the command\'s own name, a one-line reason, the documented code, no stack trace', async () => {
    const bogus = await runColo(['primary', '--bogus']);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/^colo primary: invalid configuration: .*'--bogus'/);
    const image = await coloWithKey(['primary', '--guest-image', '/nope.img', '--admin-listen', '127.0.0.1:0', '--service-listen', '127.0.0.1:0', '--replication-listen', '127.0.0.1:0']);
    expect(image.code).toBe(3);
    expect(image.stderr).toMatch(/^colo primary: could not start the guest: ENOENT.*\/nope\.img/m);
    expect(`${image.stdout}${image.stderr}`).not.toMatch(STACK_FRAME);
    expect(`${image.stdout}${image.stderr}`).not.toContain('"stack"');
  });

  test('status: 0 when every node answers, 1 when one of them does not, 3 when none does; checkpoint unreachable is 3', async () => {
    node = spawn(process.execPath, [...NODE_HEAP_FLAGS, coloBin, 'primary', '--guest-memory', '4MiB', '--replication-listen', '127.0.0.1:21740', '--service-listen', '127.0.0.1:21741', '--admin-listen', '127.0.0.1:21742'], {
      cwd: repo,
      env: { ...process.env, COLO_REPLICATION_PSK: PSK },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    node.stdout!.on('data', (d) => (log += d));
    node.stderr!.on('data', (d) => (log += d));
    const up = 'http://127.0.0.1:21742';
    const down = 'http://127.0.0.1:21749';
    for (const deadline = Date.now() + 20_000; !(await getStatus(up, 500).catch(() => undefined)); ) {
      if (Date.now() > deadline) throw new Error('the node did not come up');
      await new Promise((r) => setTimeout(r, 100));
    }
    const alone = await runColo(['status', '--node', up]);
    expect(alone.code).toBe(0);
    // Not protected, and why: a primary with no secondary yet.
    expect(alone.stdout).toMatch(/role {8}primary, UNPROTECTED\n {2}why {9}waiting for a secondary \(none attached\)\n/);
    expect((await runColo(['status', '--node', up, '--node', down])).code).toBe(1);
    const none = await runColo(['status', '--node', down]);
    expect(none.code).toBe(3);
    expect(none.stdout).toMatch(/UNREACHABLE/);
    expect((await runColo(['checkpoint', '--node', down])).code).toBe(3);
    // A normal start as primary (heap flags given, loopback, waiting for its secondary) warns about nothing, and
    // every line says which process of which host wrote it.
    const lines = log.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string; pid: number; hostname: string });
    expect(lines.filter((l) => l.level !== 'info' && l.level !== 'debug').map((l) => `${l.level}: ${l.msg}`)).toEqual([]);
    for (const l of lines) expect(l).toMatchObject({ pid: node.pid, hostname: expect.any(String) });
  });

  test('a reader that goes away ends the command quietly (EPIPE), with its exit code 0', () => {
    const dir = mkdtempSync(join(tmpdir(), 'colo-epipe-'));
    const image = join(dir, 'guest.img');
    execFileSync(process.execPath, [coloBin, 'save', '--memory', '64MiB', '-o', image], { cwd: repo });
    const out = execFileSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${coloBin}" stream inspect "${image}" 2>"${dir}/err" | head -1; echo "exit=$?"; cat "${dir}/err"`], { encoding: 'utf8' });
    expect(out).toMatch(/exit=0/);
    expect(out).not.toMatch(/EPIPE|Unhandled/);
  });

  test('bash completion: commands, subcommands, and the node commands\' setting flags', () => {
    const complete = (words: string[]) =>
      execFileSync('bash', ['-c', `source <("${process.execPath}" "${coloBin}" completion bash); COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _colo; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' }).trim().split(/\s+/);
    expect(complete(['colo', 'pri'])).toEqual(['primary']);
    expect(complete(['colo', 'stream', ''])).toEqual(['inspect', 'verify']);
    expect(complete(['colo', 'secondary', '--replication-p']).sort()).toEqual(['--replication-peer', '--replication-psk', '--replication-psk-file']);
    expect(complete(['colo', 'help', 'dri'])).toEqual(['drill']);
    const zsh = execFileSync(process.execPath, [coloBin, 'completion', 'zsh'], { encoding: 'utf8' });
    expect(zsh).toMatch(/^#compdef colo\nautoload -U \+X bashcompinit && bashcompinit\n/);
    expect(zsh).toContain('complete -F _colo colo');
  });
});
