/**
 * The simulated guest's RESP service against a real redis-server, both driven by redis-benchmark in the same
 * run on the same machine: SET, GET and INCR, without pipelining and with 16 commands per pipeline (-P 16),
 * 50 clients (redis-benchmark's default). The guest runs as `colo guest` in its own process (from the sources,
 * through tsx), redis-server with persistence off; the two are measured alternately so machine load drifts
 * affect both. Target: the guest reaches at least a quarter of redis-server's ops/s.
 *
 * Run alone: `npx tsx --conditions=@colo/source bench/run.ts guest`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type { BenchRow, BenchSuite } from './harness.js';

const repo = resolve(import.meta.dirname, '..');
const TARGET_RATIO = 0.25;

function tool(name: string): string {
  const envFile = join(repo, '.tools/env');
  const line = existsSync(envFile) ? readFileSync(envFile, 'utf8').split('\n').find((l) => l.startsWith(`${name}=`)) : undefined;
  const path = line?.slice(name.length + 1).trim();
  if (!path || !existsSync(path)) throw new Error(`${name} is not installed: run 'npm run tools'`);
  return path;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Starts a server process and waits until `ready` matches its output. */
async function start(cmd: string, args: string[], ready: RegExp): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(cmd, args, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(timer);
        resolvePromise();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${cmd} exited with ${code}: ${out}`)));
  });
  return { child, output: () => out };
}

/** ops/s per test from redis-benchmark --csv. */
function benchmark(port: number, pipeline: number, requests: number): Map<string, number> {
  const r = spawnSync(tool('REDIS_BENCHMARK'), ['-h', '127.0.0.1', '-p', String(port), '-t', 'set,get,incr', '-n', String(requests), '-P', String(pipeline), '--csv'], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`redis-benchmark failed (${r.status}): ${r.stderr}`);
  const result = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    const m = /^"([A-Z]+)","([\d.]+)"/.exec(line.trim());
    if (m) result.set(m[1]!, Number(m[2]));
  }
  if (result.size !== 3) throw new Error(`unexpected redis-benchmark output: ${r.stdout}`);
  return result;
}

const suite: BenchSuite = {
  name: 'Simulated guest (RESP service) vs redis-server',
  async run(log) {
    const redisServer = tool('REDIS_SERVER');
    tool('REDIS_BENCHMARK');
    const redisPort = await freePort();
    const redis = await start(redisServer, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], /Ready to accept connections/);
    const guest = await start(join(repo, 'node_modules/.bin/tsx'), ['--conditions=@colo/source', 'packages/cli/src/bin.ts', 'guest', '--listen', '127.0.0.1:0', '--memory', '256MiB'], /listening on/);
    const guestPort = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(guest.output())![1]);
    const rows: BenchRow[] = [];
    try {
      for (const [pipeline, requests] of [
        [1, 100_000],
        [16, 400_000],
      ] as const) {
        // Warm up both (JIT, connection setup), then alternate measurements and keep each side's best of two.
        benchmark(guestPort, pipeline, requests / 10);
        benchmark(redisPort, pipeline, requests / 10);
        const best = (a: Map<string, number>, b: Map<string, number>) => new Map([...a].map(([k, v]) => [k, Math.max(v, b.get(k)!)]));
        const g1 = benchmark(guestPort, pipeline, requests);
        const r1 = benchmark(redisPort, pipeline, requests);
        const g2 = benchmark(guestPort, pipeline, requests);
        const r2 = benchmark(redisPort, pipeline, requests);
        const g = best(g1, g2);
        const r = best(r1, r2);
        for (const test of ['SET', 'GET', 'INCR']) {
          const ratio = g.get(test)! / r.get(test)!;
          log(`${test} -P ${pipeline}: guest ${g.get(test)!.toFixed(0)} ops/s, redis-server ${r.get(test)!.toFixed(0)} ops/s, ratio ${ratio.toFixed(2)}`);
          rows.push({
            name: `${test}, ${pipeline === 1 ? 'no pipelining' : `pipeline ${pipeline}`}, 50 clients`,
            value: g.get(test)!,
            unit: 'ops/s',
            baseline: `redis-server ${r.get(test)!.toFixed(0)} ops/s`,
            ratio,
            target: `>= ${TARGET_RATIO} of redis-server`,
            met: ratio >= TARGET_RATIO,
          });
        }
      }
    } finally {
      guest.child.kill('SIGTERM');
      redis.child.kill('SIGTERM');
    }
    return rows;
  },
};
export default suite;
