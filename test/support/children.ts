import type { ChildProcess } from 'node:child_process';

/** Kills (SIGKILL) every process a test started that still runs, and waits until each has exited. */
export async function killAll(children: Iterable<ChildProcess | undefined>): Promise<void> {
  for (const c of children) {
    if (!c || c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  }
}
