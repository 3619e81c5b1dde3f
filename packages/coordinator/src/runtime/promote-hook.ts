import { spawn } from 'node:child_process';
import type { Logger } from 'pino';

/**
 * Runs the operator's promote hook (e.g. a script that moves a virtual IP) when this node becomes primary.
 * It runs in the background with a time limit; its exit status is logged, never fatal: serving clients on the
 * node's own address does not depend on it.
 */
export function runPromoteHook(command: string, env: Record<string, string>, log: Logger, timeoutMs = 30_000): Promise<number | null> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn('/bin/sh', ['-c', command], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (d: Buffer) => {
      if (output.length < 4096) output += d.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      log.error({ err: e, command }, 'promote hook could not start');
      resolve(null);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const entry = { command, exitCode: code, signal, seconds, output: output.trim().slice(0, 1000) };
      if (code === 0) log.info(entry, 'promote hook succeeded');
      else log.error(entry, 'promote hook failed');
      resolve(code);
    });
  });
}
