import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  Arbitration,
  ArbiterError,
  ArbiterErrorCode,
  CoordinatorErrorCode,
  LocalArbiter,
  MemoryArbiter,
  PAIR_HOLDER,
  startLocalArbiterServer,
  type Arbiter,
  type EpochExpectation,
  type EpochRecord,
  type LocalArbiterServer,
} from '../internals.js';
import { arbiterContract } from './contract.js';

/** The local arbiter: a real unix socket served by a real HTTP server, and real clients in this process. */
const quiet = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function socketPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'colo-arb-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'arbiter.sock');
}

async function served(): Promise<{ server: LocalArbiterServer; path: string; client: (timeoutMs?: number) => LocalArbiter }> {
  const path = socketPath();
  const server = await startLocalArbiterServer(path);
  cleanups.push(() => server.close());
  return { server, path, client: (timeoutMs) => new LocalArbiter({ socketPath: path, timeoutMs }) };
}

/** A server on `path` that answers every request with `answer` (or never, for undefined). */
async function fakeServer(path: string, answer: { status: number; body: string } | undefined): Promise<Server> {
  const s = createServer((_req, res) => {
    if (!answer) return; // never answers
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(answer.body);
  });
  await new Promise<void>((r) => s.listen(path, () => r()));
  cleanups.push(() => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); }));
  return s;
}

describe('memory arbiter (the local arbiter\'s store)', () => {
  arbiterContract(async () => {
    const store = new MemoryArbiter();
    return [store, store];
  }, 100);
});

describe('local arbiter', () => {
  arbiterContract(async () => {
    const { client } = await served();
    return [client(), client()];
  }, 100);

  it('serves its socket to this user only', async () => {
    const { path } = await served();
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('gives typed errors: nobody listening, no answer in time, an answer that is not a record, a closed client', async () => {
    const path = socketPath();
    await expect(new LocalArbiter({ socketPath: path }).read()).rejects.toMatchObject({ code: ArbiterErrorCode.UNREACHABLE });
    await fakeServer(path, undefined);
    const t0 = performance.now();
    await expect(new LocalArbiter({ socketPath: path, timeoutMs: 150 }).compareAndSwap(null, { epoch: 0, holder: 'a' })).rejects.toMatchObject({
      code: ArbiterErrorCode.UNREACHABLE,
    });
    expect(performance.now() - t0).toBeLessThan(5000);

    const p2 = socketPath();
    await fakeServer(p2, { status: 200, body: JSON.stringify({ record: { epoch: -1, holder: 'x' } }) });
    await expect(new LocalArbiter({ socketPath: p2 }).read()).rejects.toMatchObject({ code: ArbiterErrorCode.CORRUPT_RECORD });
    const p3 = socketPath();
    await fakeServer(p3, { status: 200, body: 'not json' });
    await expect(new LocalArbiter({ socketPath: p3 }).read()).rejects.toMatchObject({ code: ArbiterErrorCode.CORRUPT_RECORD });
    const p4 = socketPath();
    await fakeServer(p4, { status: 200, body: JSON.stringify({ swapped: 'yes' }) });
    await expect(new LocalArbiter({ socketPath: p4 }).compareAndSwap(null, { epoch: 0, holder: 'a' })).rejects.toMatchObject({ code: ArbiterErrorCode.CORRUPT_RECORD });

    const p5 = socketPath();
    await fakeServer(p5, { status: 200, body: JSON.stringify({ record: null, padding: 'x'.repeat(100_000) }) });
    await expect(new LocalArbiter({ socketPath: p5 }).read()).rejects.toMatchObject({ code: ArbiterErrorCode.CORRUPT_RECORD });

    const closed = new LocalArbiter({ socketPath: p4 });
    await closed.close();
    await expect(closed.read()).rejects.toMatchObject({ code: ArbiterErrorCode.CLOSED });
    expect(() => new LocalArbiter({ socketPath: '' })).toThrow(ArbiterError);
  });

  it('refuses malformed and oversize requests without touching the record', async () => {
    const { path, server } = await served();
    server.store.reset({ epoch: 3, holder: 'node-a' });
    const post = (body: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ socketPath: path, method: 'POST', path: '/swap' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end(body);
      });
    expect(await post('{')).toBe(400);
    expect(await post(JSON.stringify({ expect: { epoch: 3 }, next: { epoch: 'x', holder: 'b' } }))).toBe(400);
    expect(await post(JSON.stringify({ expect: { epoch: -2 }, next: { epoch: 4, holder: 'b' } }))).toBe(400);
    expect(await post('x'.repeat(10_000)).catch(() => 'reset')).not.toBe(200);
    expect(server.store.peek()).toEqual({ epoch: 3, holder: 'node-a' });
  });
});

describe('a node\'s arbitration', () => {
  it('asks again until the arbiter answers, holding the decision meanwhile, and reports reachability', async () => {
    const path = socketPath();
    const arbitration = new Arbitration(new LocalArbiter({ socketPath: path, timeoutMs: 200 }), quiet);
    cleanups.push(() => arbitration.close());
    const reach: boolean[] = [];
    arbitration.observe({ reachable: (r) => reach.push(r) });
    const decision = arbitration.decide('node-b', 'secondary', 4);
    await new Promise((r) => setTimeout(r, 300));
    expect(arbitration.status()).toMatchObject({ reachable: false, pending: 'promote', lastDecision: null, lastError: { code: ArbiterErrorCode.UNREACHABLE } });
    // The arbiter comes (back): the same request is answered.
    const server = await startLocalArbiterServer(path);
    cleanups.push(() => server.close());
    server.store.reset({ epoch: 4, holder: PAIR_HOLDER });
    const d = await decision;
    expect(d).toMatchObject({ purpose: 'promote', epoch: 5, won: true, current: { epoch: 5, holder: 'node-b' } });
    expect(d!.unanswered).toBeGreaterThan(0);
    expect(reach).toEqual([false, true]);
    expect(arbitration.status()).toMatchObject({ reachable: true, pending: null, lastError: null });
  });

  it('between requests, it reads the record to tell whether the arbiter answers (nothing decided from it)', async () => {
    const { server, path } = await served();
    server.store.reset({ epoch: 1, holder: PAIR_HOLDER });
    const arbitration = new Arbitration(new LocalArbiter({ socketPath: path, timeoutMs: 200 }), quiet);
    cleanups.push(() => arbitration.close());
    const reach: boolean[] = [];
    arbitration.observe({ reachable: (r) => reach.push(r) });
    arbitration.startChecking(50);
    await server.close();
    const until = async (f: () => boolean) => {
      for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 20));
      return f();
    };
    expect(await until(() => arbitration.status().reachable === false)).toBe(true);
    expect(arbitration.status()).toMatchObject({ pending: null, lastDecision: null, lastError: { code: ArbiterErrorCode.UNREACHABLE } });
    const again = await startLocalArbiterServer(path, server.store);
    cleanups.push(() => again.close());
    expect(await until(() => arbitration.status().reachable)).toBe(true);
    expect(reach).toEqual([false, true]);
    expect(arbitration.status().lastError).toBeNull();
    expect(again.store.peek()).toEqual({ epoch: 1, holder: PAIR_HOLDER });
  });

  it('a request the arbiter applied but whose answer was lost counts as won when asked again', async () => {
    const store = new MemoryArbiter();
    store.reset({ epoch: 2, holder: PAIR_HOLDER });
    let dropped = false;
    const lossy: Arbiter = {
      kind: 'local',
      where: 'test',
      read: () => store.read(),
      async compareAndSwap(expect: EpochExpectation, next: EpochRecord) {
        const r = await store.compareAndSwap(expect, next);
        if (!dropped) {
          dropped = true;
          throw new ArbiterError(ArbiterErrorCode.UNREACHABLE, 'answer lost');
        }
        return r;
      },
      close: async () => {},
    };
    const arbitration = new Arbitration(lossy, quiet);
    const d = await arbitration.decide('node-a', 'primary', 2);
    expect(d).toMatchObject({ won: true, epoch: 3, unanswered: 1 });
  });

  it('reports a request as waiting until its own answer, when two overlap (recording the pair, then a decision)', async () => {
    const store = new MemoryArbiter();
    store.reset({ epoch: 4, holder: 'node-a' });
    const gates: (() => void)[] = [];
    const slow: Arbiter = {
      kind: 'local',
      where: 'test',
      read: () => store.read(),
      compareAndSwap: (expect: EpochExpectation, next: EpochRecord) => new Promise((resolve) => gates.push(() => resolve(store.compareAndSwap(expect, next)))),
      close: async () => {},
    };
    const a = new Arbitration(slow, quiet);
    const seen: (string | null)[] = [];
    a.observe({ pending: (p) => seen.push(p) });
    const recorded = a.markProtected('node-a', 4);
    const decided = a.decide('node-a', 'primary', 4);
    await new Promise((r) => setTimeout(r, 10));
    expect(a.status().pending).toBe('continue');
    gates.shift()!();
    expect(await recorded).toMatchObject({ purpose: 'protect', won: true });
    // The decision still waits: the node still holds its output, and says so.
    expect(a.status().pending).toBe('continue');
    gates.shift()!();
    expect(await decided).toMatchObject({ purpose: 'continue', won: true, epoch: 5 });
    expect(a.status().pending).toBeNull();
    expect(seen).toEqual(['protect', 'continue', null]);
  });

  it('registers a starting primary: creates the record, takes the next epoch of its own, refuses a stale former primary', async () => {
    const store = new MemoryArbiter();
    const a = new Arbitration(store, quiet);
    expect(await a.register('node-a', 0)).toBe(0);
    // Restarted while it held the epoch alone (unprotected): the next epoch.
    expect(await a.register('node-a', 0)).toBe(1);
    // The pair was protected (the secondary holds the guest), or the other node took over: refused, typed.
    store.reset({ epoch: 1, holder: PAIR_HOLDER });
    await expect(a.register('node-a', 0)).rejects.toMatchObject({ code: CoordinatorErrorCode.ARBITER_REFUSED });
    store.reset({ epoch: 2, holder: 'node-b' });
    await expect(a.register('node-a', 0)).rejects.toMatchObject({ code: CoordinatorErrorCode.ARBITER_REFUSED });
  });

  it('stops asking when closed: a pending decision ends without an answer', async () => {
    const a = new Arbitration(new LocalArbiter({ socketPath: socketPath(), timeoutMs: 100 }), quiet);
    const d = a.decide('node-a', 'primary', 0);
    await new Promise((r) => setTimeout(r, 150));
    await a.close();
    expect(await d).toBeUndefined();
  });
});
