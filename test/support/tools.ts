import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository root. */
export const repo = resolve(import.meta.dirname, '../..');

/**
 * Path of an external tool recorded by scripts/tools.sh in .tools/env (XEN_VERIFY, PROMTOOL, PROMETHEUS,
 * REDIS_CLI, ...). Throws, failing the test loudly, when the tool is not there: tests never skip silently.
 */
export function tool(name: string): string {
  const envFile = join(repo, '.tools/env');
  if (!existsSync(envFile)) throw new Error(`.tools/env is missing: run 'npm run tools' to install the test tools (${name})`);
  const line = readFileSync(envFile, 'utf8').split('\n').find((l) => l.startsWith(`${name}=`));
  const path = line?.slice(name.length + 1).trim();
  if (!path || path === 'missing' || !existsSync(path)) {
    throw new Error(`${name} is not installed (${path ?? 'not in .tools/env'}): run 'npm run tools'`);
  }
  return path;
}

/** The built CLI entry point (npm test builds before running tests). */
export const coloBin = join(repo, 'packages/cli/dist/bin.js');
