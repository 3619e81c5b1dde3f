import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { UsageError } from './command.js';

/** node:util parseArgs (strict), its errors as UsageError. (The cli package emits no declarations, so this may infer.) */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = false) {
  return usageErrors(() => parseArgs({ args: argv, options, allowPositionals, strict: true }));
}

/** Runs an argument parse (node:util parseArgs), turning its errors into UsageError (exit 2, with a help hint). */
export function usageErrors<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The admin token from --token-file, else COLO_ADMIN_TOKEN, else COLO_ADMIN_TOKEN_FILE. Never printed. */
export function adminToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = tokenFile ?? env.COLO_ADMIN_TOKEN_FILE;
  if (file) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new UsageError(`cannot read the admin token file ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  }
  return env.COLO_ADMIN_TOKEN || undefined;
}

/** Nodes from repeated --node flags, else COLO_NODES (comma separated), else the `colo pair` defaults. */
export function nodeUrls(flags: string[] | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (flags && flags.length > 0) return flags;
  if (env.COLO_NODES) return env.COLO_NODES.split(',').map((s) => s.trim()).filter(Boolean);
  return ['http://127.0.0.1:9464', 'http://127.0.0.1:9465'];
}
