import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Paths scripts/tools.sh recorded in .tools/env; a missing tool fails the test loudly (never skips). */
const repo = resolve(import.meta.dirname, '../../..');
export function tool(name: string): string {
  const envFile = join(repo, '.tools/env');
  if (!existsSync(envFile)) throw new Error(`.tools/env is missing: run 'npm run tools' (${name})`);
  const line = readFileSync(envFile, 'utf8').split('\n').find((l) => l.startsWith(`${name}=`));
  const path = line?.slice(name.length + 1).trim();
  if (!path || path === 'missing' || !existsSync(path)) throw new Error(`${name} is not installed (${path ?? 'not in .tools/env'}): run 'npm run tools'`);
  return path;
}
