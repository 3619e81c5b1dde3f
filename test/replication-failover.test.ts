/**
 * Operator story with real processes: a Remus (and a COLO) pair (primary and secondary in two OS processes, talking over ws
 * on loopback) protects a key-value guest; the primary writes keys and reports each write once the checkpoint
 * covering it is acknowledged by the secondary; then the primary process is killed with SIGKILL. The secondary
 * must take over (epoch 1) and hold every acknowledged key.
 *
 * The same file is the child program (COLO_REPLICATION_CHILD=primary|secondary), run with tsx from the sources.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const child = process.env.COLO_REPLICATION_CHILD;

if (child) {
  const { SimulatedGuest } = await import('@colo/domain');
  const { ColoNode } = await import('@colo/coordinator');
  const pino = (await import('pino')).default;
  const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
  const psk = Buffer.from(process.env.COLO_PSK!, 'hex');
  const common = {
    mode: (process.env.COLO_MODE ?? 'remus') as 'remus' | 'colo',
    security: { psk },
    logger: pino({ level: 'silent' }),
    heartbeat: { intervalMs: 50, timeoutMs: 500 },
    checkpoint: { remusIntervalMs: 50, phaseTimeoutMs: 2000, stallTimeoutMs: 2000 },
  };
  if (child === 'primary') {
    const guest = new SimulatedGuest({ memoryBytes: 1024 * 4096 });
    const node = new ColoNode({ ...common, nodeId: 'proc-a', role: 'primary', domain: guest, replication: { listen: { host: '127.0.0.1', port: 0 } } });
    await node.start();
    out({ event: 'listening', url: node.listenUrl });
    await new Promise<void>((r) => node.on('protected', () => r()));
    guest.openConnection(1);
    for (let i = 0; ; i++) {
      const cmd = `*3\r\n$3\r\nSET\r\n$${`key${i}`.length}\r\nkey${i}\r\n$${`v${i}`.length}\r\nv${i}\r\n`;
      guest.deliverInput(1, Buffer.from(cmd));
      // The write is in memory now; it is safe (acknowledged) once a checkpoint started after it completes.
      await node.requestCheckpoint('manual');
      out({ event: 'acked', key: `key${i}` });
      await new Promise((r) => setTimeout(r, 5));
    }
  } else {
    const node = new ColoNode({
      ...common,
      nodeId: 'proc-b',
      role: 'secondary',
      hostGuest: (id) => new SimulatedGuest({ memoryBytes: id!.pageCount * 4096, startSuspended: true }),
      replication: { peer: process.env.COLO_PEER!, listen: { host: '127.0.0.1', port: 0 } },
    });
    node.on('promoted', (epoch) => {
      const g = node.domain as InstanceType<typeof SimulatedGuest>;
      out({ event: 'promoted', epoch, state: node.status().state, running: g.state === 'running', keys: g.keys().map((k) => k.toString()) });
    });
    await node.start();
    out({ event: 'joined' });
  }
} else {
  const { afterAll, describe, expect, it } = await import('vitest');
  const { randomBytes } = await import('node:crypto');
  const self = fileURLToPath(import.meta.url);
  const procs: ChildProcess[] = [];
  afterAll(() => {
    for (const p of procs) p.kill('SIGKILL');
  });

  function run(role: string, env: Record<string, string>) {
    // node itself (not npx/tsx wrappers), so SIGKILL kills the node process and nothing survives it.
    const p = spawn(process.execPath, ['--import', 'tsx', '--conditions=@colo/source', self], {
      env: { ...process.env, ...env, COLO_REPLICATION_CHILD: role },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    procs.push(p);
    const lines: Record<string, unknown>[] = [];
    const waiters: (() => void)[] = [];
    createInterface({ input: p.stdout! }).on('line', (l) => {
      try {
        lines.push(JSON.parse(l));
      } catch {
        return;
      }
      for (const w of waiters.splice(0)) w();
    });
    const waitFor = (what: string, pred: (l: Record<string, unknown>) => boolean, timeoutMs = 60_000) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${role}: no ${what} in ${timeoutMs} ms`)), timeoutMs);
        const check = () => {
          const hit = lines.find(pred);
          if (hit) {
            clearTimeout(t);
            resolve(hit);
          } else waiters.push(check);
        };
        check();
      });
    return { p, lines, waitFor };
  }

  describe.each(['remus', 'colo'])('a %s pair in two processes', (mode) => {
    it('the secondary takes over after the primary is killed, holding every acknowledged write', async () => {
      const psk = randomBytes(32).toString('hex');
      const primary = run('primary', { COLO_PSK: psk, COLO_MODE: mode });
      const { url } = (await primary.waitFor('listening', (l) => l.event === 'listening')) as { url: string };
      const secondary = run('secondary', { COLO_PSK: psk, COLO_PEER: url, COLO_MODE: mode });
      await secondary.waitFor('joined', (l) => l.event === 'joined');
      await primary.waitFor('20 acknowledged writes', () => primary.lines.filter((l) => l.event === 'acked').length >= 20);
      primary.p.kill('SIGKILL');
      const killedAt = Date.now();
      const acked = primary.lines.filter((l) => l.event === 'acked').map((l) => l.key as string);
      const promoted = (await secondary.waitFor('promotion', (l) => l.event === 'promoted', 10_000)) as { epoch: number; state: string; running: boolean; keys: string[] };
      expect(Date.now() - killedAt).toBeLessThan(5_000);
      expect(promoted.epoch).toBe(1);
      expect(promoted.state).toBe('unprotected');
      expect(promoted.running).toBe(true);
      const held = new Set(promoted.keys);
      expect(acked.filter((k) => !held.has(k))).toEqual([]);
      expect(acked.length).toBeGreaterThanOrEqual(20);
    });
  });
}
