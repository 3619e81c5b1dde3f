import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { repo, tool } from './tools.js';

/**
 * A real Prometheus server for end-to-end tests, started from the shipped deploy/prometheus/prometheus.yml with
 * only what a test must change: the two targets (the test pair's admin ports), a 1 s scrape and evaluation
 * interval, and its own storage directory and listen address. Labels and the rule file are kept as shipped.
 */
export interface TestPrometheus {
  url: string;
  dir: string;
  process: ChildProcess;
  /** An instant query; resolves with the result vector (throws on an API error). */
  query(expr: string): Promise<PromSample[]>;
  /** GET /api/v1/<path> and return its `data`. */
  api<T = unknown>(path: string): Promise<T>;
  stop(): Promise<void>;
}

export interface PromSample {
  metric: Record<string, string>;
  /** [unix seconds, value as text] */
  value: [number, string];
}

/** Rewrites the shipped scrape config: targets in order node-a, node-b become `targets`. */
export function adaptScrapeConfig(shipped: string, targets: [string, string], ruleFile: string): string {
  const cfg = parse(shipped) as {
    global: Record<string, unknown>;
    rule_files: string[];
    scrape_configs: { job_name: string; static_configs: { targets: string[]; labels: Record<string, string> }[] }[];
  };
  cfg.global.scrape_interval = '1s';
  cfg.global.evaluation_interval = '1s';
  cfg.rule_files = [ruleFile];
  const job = cfg.scrape_configs.find((j) => j.job_name === 'colo');
  if (!job || job.static_configs.length !== 2) throw new Error('deploy/prometheus/prometheus.yml: expected job "colo" with two static_configs');
  job.static_configs.forEach((sc, i) => {
    sc.targets = [targets[i]!];
  });
  return stringify(cfg);
}

export async function startPrometheus(opts: { port: number; targets: [string, string] }): Promise<TestPrometheus> {
  const bin = tool('PROMETHEUS');
  const dir = mkdtempSync(join(tmpdir(), 'colo-e2e-prom-'));
  const shippedDir = join(repo, 'deploy/prometheus');
  // The rule file is copied next to the config so the relative `rule_files` entry still resolves.
  copyFileSync(join(shippedDir, 'colo-alerts.yml'), join(dir, 'colo-alerts.yml'));
  const config = adaptScrapeConfig(readFileSync(join(shippedDir, 'prometheus.yml'), 'utf8'), opts.targets, 'colo-alerts.yml');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const logFd = openSync(join(dir, 'prometheus.log'), 'a');
  const child = spawn(
    bin,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${opts.port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', logFd, logFd] },
  );
  closeSync(logFd);
  const url = `http://127.0.0.1:${opts.port}`;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${url}/api/v1/${path}`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${body.error ?? res.status}`);
    return body.data;
  }

  const prom: TestPrometheus = {
    url,
    dir,
    process: child,
    api,
    async query(expr) {
      const data = await api<{ resultType: string; result: PromSample[] }>(`query?query=${encodeURIComponent(expr)}`);
      return data.result;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.kill('SIGTERM');
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  // Ready when /-/ready answers 200; a Prometheus that exits (bad config, port taken) fails at once.
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      const log = readFileSync(join(dir, 'prometheus.log'), 'utf8');
      throw new Error(`Prometheus (${bin}) exited with ${child.exitCode} before it was ready:\n${log.slice(-2000)}`);
    }
    const ok = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) return prom;
    if (Date.now() > deadline) {
      await prom.stop();
      throw new Error(`Prometheus (${bin}) not ready on ${url} after 30 s`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Polls `f` every `everyMs` until it returns a value other than undefined, or throws `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
