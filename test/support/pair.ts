import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { PairSupervisor, type PairOptions } from '../../packages/cli/src/pair/supervisor.js';
import { getStatus, type NodeStatusDoc } from '../../packages/cli/src/client/admin-client.js';
import { NODE_HEAP_FLAGS } from '../../packages/cli/src/runtime/node-flags.js';
import { coloBin } from './tools.js';

/**
 * A real pair for end-to-end tests: two `colo node` processes (the built CLI) on loopback, supervised like
 * `colo pair` (a node that dies is restarted as a secondary of the survivor). Each test file passes its own
 * base port so files can run in parallel.
 */
export interface TestPair {
  sup: PairSupervisor;
  token: string;
  dir: string;
  adminUrls: [string, string];
  /** The node acting as primary now, with its status. */
  primary(): Promise<{ index: 0 | 1; status: NodeStatusDoc }>;
  waitProtected(timeoutMs?: number): Promise<{ index: 0 | 1; status: NodeStatusDoc }>;
  stop(): Promise<void>;
}

export async function startPair(opts: { basePort: number; mode?: 'colo' | 'remus'; memory?: string; extra?: Record<string, unknown>; logLevel?: string; arbiter?: 'local' | 'none' | 'etcd'; etcd?: string; qemu?: PairOptions['qemu'] }): Promise<TestPair> {
  const dir = mkdtempSync(join(tmpdir(), 'colo-e2e-'));
  const o: PairOptions = {
    dir,
    mode: opts.mode ?? 'colo',
    memory: opts.memory ?? '16MiB',
    host: '127.0.0.1',
    servicePort: opts.basePort,
    adminPort: opts.basePort + 2,
    replicationPort: opts.basePort + 4,
    dirtyRate: 0,
    extra: opts.extra ?? {},
    logLevel: opts.logLevel ?? 'info',
    arbiter: opts.arbiter,
    etcd: opts.etcd,
    qemu: opts.qemu,
    // As `colo pair` runs its nodes: with their heap flags.
    coloCommand: [process.execPath, ...NODE_HEAP_FLAGS, coloBin],
  };
  const sup = new PairSupervisor(o);
  await sup.start();
  const adminUrls: [string, string] = [sup.nodes[0].adminUrl, sup.nodes[1].adminUrl];
  const pair: TestPair = {
    sup,
    dir,
    token: readFileSync(sup.tokenFile, 'utf8').trim(),
    adminUrls,
    async primary() {
      for (;;) {
        const all = await Promise.all(adminUrls.map((u) => getStatus(u, 1000).catch(() => undefined)));
        const i = all.findIndex((s) => s?.role === 'primary');
        if (i >= 0) return { index: i as 0 | 1, status: all[i]! };
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async waitProtected(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const all = await Promise.all(adminUrls.map((u) => getStatus(u, 1000).catch(() => undefined)));
        const i = all.findIndex((s) => s?.role === 'primary' && s.protected);
        const other = all[1 - i];
        if (i >= 0 && other?.role === 'secondary' && other.protected) return { index: i as 0 | 1, status: all[i]! };
        if (Date.now() > deadline) {
          throw new Error(`pair not protected after ${timeoutMs} ms: ${JSON.stringify(all.map((s) => s && { role: s.role, state: s.state, protected: s.protected }))}; logs in ${dir}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: () => sup.stop(),
  };
  return pair;
}
