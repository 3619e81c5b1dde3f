import { spawn, spawnSync } from 'node:child_process';
import { getStatus, type NodeStatusDoc } from '../../packages/cli/src/client/admin-client.js';
import type { TestPair } from './pair.js';
import { tool } from './tools.js';

/**
 * Client-side helpers for the client-path tests and the pair benchmark: the real Redis tools against a
 * service port, checkpoint counters from a node's /status and /metrics, and waiting for a serving primary.
 */

/** Runs redis-cli once (raw output, one reply per line); throws with its stderr when it fails. */
export function redisCli(port: number, ...args: string[]): string {
  const r = spawnSync(tool('REDIS_CLI'), ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw new Error(`redis-cli ${args.join(' ')} could not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout.replace(/\n$/, '');
}

export interface BenchmarkResult {
  /** Requests per second by test name as redis-benchmark prints it (SET, GET, INCR, ...). */
  rps: Record<string, number>;
  /** p50 latency in ms by test name (only with `--csv`-less quiet output of redis 7: "p50=0.123 msec"). */
  p50: Record<string, number>;
  stdout: string;
  stderr: string;
}

/**
 * Runs redis-benchmark (asynchronously: the pair runs in other processes, but the test's own event loop must
 * stay free for status polls). Fails on a non-zero exit, on any error line, or when a test reports no rate.
 */
export function redisBenchmark(port: number, args: string[], timeoutMs = 240_000): Promise<BenchmarkResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool('REDIS_BENCHMARK'), ['-h', '127.0.0.1', '-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-benchmark ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`redis-benchmark could not run: ${e.message}`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      // Quiet mode rewrites a progress line with \r; the final figures follow the last \r of each line.
      const lines = stdout.split('\n').map((l) => l.split('\r').pop()!.trim()).filter(Boolean);
      const errors = lines.filter((l) => /error|refused|reset/i.test(l)).concat(stderr.split('\n').filter((l) => /error|refused|reset/i.test(l)));
      if (code !== 0 || errors.length > 0) {
        reject(new Error(`redis-benchmark ${args.join(' ')} failed (exit ${code}): ${errors.join('; ')}\n${stdout}\n${stderr}`));
        return;
      }
      const rps: Record<string, number> = {};
      const p50: Record<string, number> = {};
      for (const l of lines) {
        const m = /^([A-Za-z_]+)(?: \([^)]*\))?: ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?/.exec(l);
        if (!m) continue;
        rps[m[1]!] = Number(m[2]);
        if (m[3]) p50[m[1]!] = Number(m[3]);
      }
      resolve({ rps, p50, stdout, stderr });
    });
  });
}

/** Checkpoints by reason from GET /status. */
export async function statusCheckpoints(adminUrl: string): Promise<Record<string, number>> {
  const s = await getStatus(adminUrl, 5000);
  return { ...(s.checkpoints ?? {}) };
}

/** A node's GET /metrics (Prometheus text format). */
async function metricsText(adminUrl: string): Promise<string> {
  const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${adminUrl}/metrics answered ${res.status}`);
  return res.text();
}

/** `colo_checkpoints_total` by reason, parsed from GET /metrics. */
export async function metricsCheckpoints(adminUrl: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await metricsText(adminUrl)).matchAll(/^colo_checkpoints_total\{[^}]*reason="([^"]+)"[^}]*\} ([\d.e+]+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/** The value of one unlabelled metric on a node's /metrics (NaN if it is not there). */
export async function metricValue(adminUrl: string, name: string): Promise<number> {
  const m = new RegExp(`^${name} ([\\d.e+-]+)$`, 'm').exec(await metricsText(adminUrl));
  return m ? Number(m[1]) : Number.NaN;
}

/**
 * Waits until some node is primary and serves the client service; returns its index, status and port.
 * Throws after `timeoutMs`, naming what each node reported.
 */
export async function waitServing(pair: TestPair, timeoutMs = 30_000, not?: 0 | 1): Promise<{ index: 0 | 1; status: NodeStatusDoc; port: number }> {
  const deadline = Date.now() + timeoutMs;
  let last: (NodeStatusDoc | undefined)[] = [];
  for (;;) {
    last = await Promise.all(pair.adminUrls.map((u) => getStatus(u, 1000).catch(() => undefined)));
    for (const i of [0, 1] as const) {
      const s = last[i];
      if (i !== not && s?.role === 'primary' && s.service) return { index: i, status: s, port: s.service.port };
    }
    if (Date.now() > deadline) {
      throw new Error(`no serving primary after ${timeoutMs} ms: ${JSON.stringify(last.map((s) => s && { role: s.role, state: s.state, service: s.service }))}; logs in ${pair.dir}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Sum of a reason map's values. */
export function total(m: Record<string, number>): number {
  return Object.values(m).reduce((a, b) => a + b, 0);
}
