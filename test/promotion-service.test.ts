import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { metricValue } from './support/clients.js';
import { killAll } from './support/children.js';
import { coloBin, repo } from './support/tools.js';

/**
 * A node that cannot serve clients never acts as a primary without a service (issue 24: a promoted secondary whose
 * service port was taken logged PROXY_LISTEN_FAIL and stayed "primary" with no service, taking resyncs it could
 * not serve). A secondary checks at start that it could serve (exit 3); a promoted node retries opening its
 * service, refusing secondaries meanwhile (colo_service_up 0), then stops (exit 1). Ports 21700..21739.
 */
const PSK = 'promotion-service-psk-0123456789';
const children: ChildProcess[] = [];
const servers: Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  await killAll(children.splice(0));
});

interface Ports {
  replication: number;
  service: number;
  admin: number;
}

function nodeArgs(id: string, p: Ports): string[] {
  return [
    '--node-id', id,
    '--guest-memory', '4MiB',
    '--replication-listen', `127.0.0.1:${p.replication}`,
    '--service-listen', `127.0.0.1:${p.service}`,
    '--admin-listen', `127.0.0.1:${p.admin}`,
    '--heartbeat-interval', '50ms',
    '--heartbeat-timeout', '400ms',
  ];
}

/** A `colo` node process; `exit` resolves with its exit code, `log` is everything it printed. */
function startNode(args: string[]): { child: ChildProcess; exit: Promise<number | null>; log: () => string } {
  const child = spawn(process.execPath, [coloBin, ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, COLO_REPLICATION_PSK: PSK, COLO_ADMIN_TOKEN: '', COLO_ADMIN_TOKEN_FILE: '' },
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, exit, log: () => out };
}

/** Holds a port as another process would. */
async function occupy(port: number): Promise<Server> {
  const s = createServer();
  servers.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve());
  });
  return s;
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const A: Ports = { replication: 21700, service: 21701, admin: 21702 };

/** A protected pair: primary a on A, secondary b on `b`. */
async function protectedPair(b: Ports) {
  const primary = startNode(['primary', ...nodeArgs('a', A)]);
  await until('primary listening', 20_000, async () => ((await getStatus(`http://127.0.0.1:${A.admin}`, 1000)).listening ? true : undefined));
  const secondary = startNode(['secondary', ...nodeArgs('b', b), '--replication-peer', `ws://127.0.0.1:${A.replication}`]);
  const bAdmin = `http://127.0.0.1:${b.admin}`;
  await until('the pair protected', 30_000, async () => ((await getStatus(bAdmin, 1000)).protected ? true : undefined));
  return { primary, secondary, bAdmin };
}

describe('a node that cannot serve never acts as a primary without a service', () => {
  test('a secondary whose service address is taken refuses to start (exit 3, COLO_SERVICE_UNAVAILABLE); the primary serves on', async () => {
    const primary = startNode(['primary', ...nodeArgs('a', A)]);
    await until('primary listening', 20_000, async () => ((await getStatus(`http://127.0.0.1:${A.admin}`, 1000)).listening ? true : undefined));
    const b: Ports = { replication: 21710, service: 21711, admin: 21712 };
    await occupy(b.service);
    const secondary = startNode(['secondary', ...nodeArgs('b', b), '--replication-peer', `ws://127.0.0.1:${A.replication}`]);
    expect(await secondary.exit).toBe(3);
    expect(secondary.log()).toMatch(/service\.listen 127\.0\.0\.1:21711 cannot be opened.*\(COLO_SERVICE_UNAVAILABLE\)/);
    const s = await getStatus(`http://127.0.0.1:${A.admin}`, 1000);
    expect(s).toMatchObject({ role: 'primary', service: { port: A.service } });
    expect(primary.child.exitCode).toBe(null);
  }, 60_000);

  test('promoted while its service port is held: it retries (not serving, colo_service_up 0) and serves once the port is free', async () => {
    const b: Ports = { replication: 21720, service: 21721, admin: 21722 };
    const { primary, bAdmin } = await protectedPair(b);
    expect(await metricValue(`http://127.0.0.1:${A.admin}`, 'colo_service_up')).toBe(1);
    expect(await metricValue(bAdmin, 'colo_service_up')).toBe(0);
    const holder = await occupy(b.service);
    primary.child.kill('SIGKILL');
    await until('b promoted', 15_000, async () => ((await getStatus(bAdmin, 1000)).role === 'primary' ? true : undefined));
    // Promoted, not serving: no service in its status, 0 in its metrics.
    const during = await getStatus(bAdmin, 1000);
    expect(during.service).toBe(null);
    expect(await metricValue(bAdmin, 'colo_service_up')).toBe(0);
    await new Promise<void>((r) => holder.close(() => r()));
    servers.splice(servers.indexOf(holder), 1);
    const after = await until('b serving', 15_000, async () => {
      const s = await getStatus(bAdmin, 1000);
      return s.service ? s : undefined;
    });
    expect(after).toMatchObject({ role: 'primary', service: { port: b.service } });
    expect(await metricValue(bAdmin, 'colo_service_up')).toBe(1);
  }, 90_000);

  test('promoted and the port stays held: it stops (exit 1, COLO_SERVICE_UNAVAILABLE) instead of staying a primary that serves nobody', async () => {
    const b: Ports = { replication: 21730, service: 21731, admin: 21732 };
    const { primary, secondary, bAdmin } = await protectedPair(b);
    await occupy(b.service);
    primary.child.kill('SIGKILL');
    await until('b promoted', 15_000, async () => ((await getStatus(bAdmin, 1000)).role === 'primary' ? true : undefined));
    // A secondary that comes meanwhile is refused: this node has nothing to serve it with.
    const c: Ports = { replication: 21735, service: 21736, admin: 21737 };
    const joiner = startNode(['secondary', ...nodeArgs('c', c), '--replication-peer', `ws://127.0.0.1:${b.replication}`]);
    expect(await joiner.exit).not.toBe(0);
    expect((await getStatus(bAdmin, 1000)).service).toBe(null);
    const code = await Promise.race([secondary.exit, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 45_000))]);
    expect(code).toBe(1);
    expect(secondary.log()).toMatch(/COLO_SERVICE_UNAVAILABLE/);
    expect(secondary.log()).toMatch(/cannot serve after the promotion: this node stops/);
  }, 120_000);
});
