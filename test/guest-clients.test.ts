/**
 * Operator story: run an unprotected simulated guest, use it with the real Redis tools, save it through its
 * control API, stop it, restore it from the file, and find every key again.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repo, tool } from './support/tools.js';

const tsx = join(repo, 'node_modules/.bin/tsx');
const cliSource = join(repo, 'packages/cli/src/bin.ts');
const children: ChildProcess[] = [];
afterAll(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));

/** Runs `colo ARGS` from the sources (the cli package may not build while other commands are in progress). */
function colo(args: string[]) {
  return spawnSync(tsx, ['--conditions=@colo/source', cliSource, ...args], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
}

/** Starts a long-running `colo guest|restore ...`; resolves once it prints its addresses. */
async function serve(args: string[]) {
  const child = spawn(tsx, ['--conditions=@colo/source', cliSource, ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`colo ${args.join(' ')} did not start: ${out}${err}`)), 30_000);
    child.stdout!.on('data', (d) => {
      out += d;
      if (/listening on/.test(out) && (!args.includes('--control') || /control API on/.test(out))) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`colo ${args.join(' ')} exited with ${code}: ${out}${err}`)));
  });
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
  const control = /control API on (http:\/\/\S+)/.exec(out)?.[1];
  return {
    port,
    control,
    output: () => out + err,
    async stop(): Promise<number | null> {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

function redisCli(port: number, ...args: string[]): string {
  const r = spawnSync(tool('REDIS_CLI'), ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

describe('a simulated guest used with the real Redis tools', () => {
  it('serves redis-cli and redis-benchmark, saves through its control API, and restores with every key', async () => {
    const benchmark = tool('REDIS_BENCHMARK');
    const verify = tool('XEN_VERIFY');
    const pythonPath = tool('XEN_PYTHONPATH');
    const guest = await serve(['guest', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--memory', '64MiB', '--name', 'story']);

    expect(redisCli(guest.port, 'PING')).toBe('PONG');
    expect(redisCli(guest.port, 'SET', 'greeting', 'hello world')).toBe('OK');
    expect(redisCli(guest.port, 'GET', 'greeting')).toBe('hello world');
    expect(redisCli(guest.port, 'INCR', 'visits')).toBe('1');
    expect(redisCli(guest.port, 'INCRBY', 'visits', '41')).toBe('42');
    expect(redisCli(guest.port, 'MSET', 'a', '1', 'b', '2')).toBe('OK');
    expect(redisCli(guest.port, 'MGET', 'a', 'nope', 'b')).toBe('1\n\n2');
    expect(redisCli(guest.port, 'DBSIZE')).toBe('4');
    expect(redisCli(guest.port, 'NOSUCHCMD')).toMatch(/ERR unknown command 'NOSUCHCMD'/);

    const bench = spawnSync(benchmark, ['-h', '127.0.0.1', '-p', String(guest.port), '-t', 'set,get,incr,mset', '-n', '20000', '-q'], { encoding: 'utf8', timeout: 300_000 });
    expect(bench.status).toBe(0);
    const lines = bench.stdout.split(/[\r\n]+/).filter((l) => /requests per second/.test(l));
    expect(lines.map((l) => l.split(':')[0]!.trim())).toEqual(['SET', 'GET', 'INCR', 'MSET (10 keys)']);
    expect(bench.stdout + bench.stderr).not.toMatch(/ERR|error/i);
    expect(redisCli(guest.port, 'GET', 'counter:__rand_int__')).toBe('20000');
    // redis-benchmark without -r uses the literal keys key:__rand_int__ and counter:__rand_int__.
    expect(redisCli(guest.port, 'DBSIZE')).toBe('6');

    // Save the running guest through its control API; Xen's verifier accepts the image.
    const dir = mkdtempSync(join(tmpdir(), 'colo-guest-'));
    const first = join(dir, 'first.img');
    const saved = colo(['save', '--from', guest.control!, '-o', first]);
    expect(saved.stderr).toBe('');
    expect(saved.status).toBe(0);
    const verified = spawnSync('python3', [verify, '-f', 'libxl', '-i', first], { env: { ...process.env, PYTHONPATH: pythonPath }, encoding: 'utf8' });
    expect(verified.stderr).toBe('');
    expect(verified.status).toBe(0);
    // The guest kept serving after the save.
    expect(redisCli(guest.port, 'GET', 'greeting')).toBe('hello world');
    expect(await guest.stop()).toBe(0);

    // Restore it; saving the restored guest before it runs a command gives the same bytes: same memory, same state.
    const restored = await serve(['restore', first, '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0']);
    const second = join(dir, 'second.img');
    expect(colo(['save', '--from', restored.control!, '-o', second]).status).toBe(0);
    expect(readFileSync(second).equals(readFileSync(first))).toBe(true);
    expect(redisCli(restored.port, 'GET', 'greeting')).toBe('hello world');
    expect(redisCli(restored.port, 'MGET', 'visits', 'a', 'b')).toBe('42\n1\n2');
    expect(redisCli(restored.port, 'GET', 'counter:__rand_int__')).toBe('20000');
    expect(redisCli(restored.port, 'DBSIZE')).toBe('6');
    expect(await restored.stop()).toBe(0);
    expect(existsSync(`${second}.partial`)).toBe(false);
  });

  it('answers a malformed client with a protocol error and closes it, without disturbing other clients', async () => {
    const guest = await serve(['guest', '--listen', '127.0.0.1:0', '--memory', '8MiB']);
    const open = () =>
      new Promise<{ socket: Socket; received: () => string; closed: Promise<void> }>((resolve, reject) => {
        const socket = connect(guest.port, '127.0.0.1');
        let data = '';
        socket.on('data', (d) => (data += d.toString('latin1')));
        socket.on('error', reject);
        const closed = new Promise<void>((r) => socket.on('close', () => r()));
        socket.on('connect', () => resolve({ socket, received: () => data, closed }));
      });
    const until = async (f: () => boolean) => {
      for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
    };
    const good = await open();
    const stalled = await open();
    const bad = await open();
    good.socket.write('*3\r\n$3\r\nSET\r\n$4\r\nmine\r\n$8\r\nprecious\r\n');
    await until(() => good.received() === '+OK\r\n');
    stalled.socket.write('*2\r\n$3\r\nGET\r\n$4\r\nmi');
    bad.socket.write(Buffer.from('*1\r\n$999999999999\r\n\x00\xff junk'));
    await bad.closed;
    expect(bad.received()).toMatch(/^-ERR Protocol error: invalid bulk length\r\n$/);
    good.socket.write('GET mine\r\n');
    await until(() => good.received().length > 5);
    expect(good.received()).toBe('+OK\r\n$8\r\nprecious\r\n');
    stalled.socket.write('ne\r\n');
    await until(() => stalled.received() !== '');
    expect(stalled.received()).toBe('$8\r\nprecious\r\n');
    good.socket.destroy();
    stalled.socket.destroy();
    expect(await guest.stop()).toBe(0);
  });
});
