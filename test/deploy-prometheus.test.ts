import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { repo, tool } from './support/tools.js';

const dir = join(repo, 'deploy/prometheus');

function promtool(...args: string[]): { code: number; out: string } {
  try {
    const out = execFileSync(tool('PROMTOOL'), args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, out };
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string };
    return { code: err.status, out: `${err.stdout}${err.stderr}` };
  }
}

describe('the shipped Prometheus configuration', () => {
  test('alert rules pass promtool check rules', () => {
    const r = promtool('check', 'rules', 'colo-alerts.yml');
    expect(r.out).toContain('SUCCESS: 13 rules found');
    expect(r.code).toBe(0);
  });

  test('alert rules pass their unit tests (promtool test rules)', () => {
    const r = promtool('test', 'rules', 'colo-alerts.test.yml');
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  test('scrape config passes promtool check config', () => {
    const r = promtool('check', 'config', 'prometheus.yml');
    expect(r.code).toBe(0);
  });
});
