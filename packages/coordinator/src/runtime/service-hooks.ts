import { spawn } from 'node:child_process';
import type { Logger } from 'pino';

/** When an operator's hook runs: this node starts serving as primary, or stops serving. */
export type ServiceHook = 'promote' | 'demote';

/**
 * Names of environment variables a hook never inherits: the node's own settings (secrets among them: the
 * pre-shared key, the admin token, the arbiter's password) and anything named like a secret. The hook gets what
 * it needs to act (COLO_HOOK, COLO_NODE_ID, COLO_EPOCH, COLO_SERVICE_ADDRESS) and the ordinary environment (PATH,
 * HOME, locale).
 */
const WITHHELD = /^COLO_|PASSWORD|PASSWD|SECRET|TOKEN|PSK|PRIVATE|CREDENTIAL|_KEY$|^KEY_/i;

export function hookEnvironment(own: Record<string, string>, inherited: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(inherited)) if (v !== undefined && !WITHHELD.test(k)) env[k] = v;
  return { ...env, ...own };
}

/**
 * Runs the operator's promote or demote hook (e.g. a script that takes or gives up a virtual IP: deploy/examples/
 * colo-move-vip) with a time limit; its exit status and output are logged, never fatal: serving clients on the
 * node's own address does not depend on it. Resolves with the exit code (null: killed, or could not start).
 */
export function runServiceHook(hook: ServiceHook, command: string, env: Record<string, string>, log: Logger, timeoutMs = 30_000): Promise<number | null> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn('/bin/sh', ['-c', command], { env: hookEnvironment({ ...env, COLO_HOOK: hook }), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (d: Buffer) => {
      if (output.length < 4096) output += d.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      log.error({ hook, command, error: e.message }, `${hook} hook could not start`);
      resolve(null);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const entry = { hook, command, exitCode: code, signal, seconds, output: output.trim().slice(0, 1000) };
      if (code === 0) log.info(entry, `${hook} hook succeeded`);
      else log.error(entry, `${hook} hook failed`);
      resolve(code);
    });
  });
}
