import { spawn } from 'node:child_process';
import { coloBin, repo } from './tools.js';

/**
 * Runs the built `colo` CLI to completion, as an operator would, with the admin-token and node-list
 * environment variables cleared so each test passes exactly what it means to. Rejects after timeoutMs.
 */
export function runColo(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [coloBin, ...args], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, COLO_ADMIN_TOKEN: '', COLO_ADMIN_TOKEN_FILE: '', COLO_NODES: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`colo ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
