import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3, Range } from 'etcd3';
import pino from 'pino';
import { Arbitration, ArbiterError, ArbiterErrorCode, EtcdArbiter, PAIR_HOLDER, type EtcdArbiterOptions } from '../internals.js';
import { startEtcd, type EtcdServer } from '../../../../test/support/etcd.js';
import { arbiterContract } from './contract.js';
import { decideStartRole } from '../../src/runtime/start-role.js';
import { makeTestPki, type TestPki } from '../transport/certs.js';

/**
 * The etcd arbiter against a real etcd (Debian's etcd-server, one member on loopback): compare-and-swap races
 * between clients, a member that stops and comes back, wrong credentials, expired auth tokens, a corrupt record.
 */
const quiet = pino({ level: 'silent' });
let etcd: EtcdServer;
const clients: { close(): unknown }[] = [];
let pairs = 0;

beforeAll(async () => {
  etcd = await startEtcd();
}, 60_000);
afterAll(async () => {
  for (const c of clients) await c.close();
  await etcd?.destroy();
});

function arbiter(o: Partial<EtcdArbiterOptions> = {}, pair = `pair-${++pairs}`): EtcdArbiter {
  const a = new EtcdArbiter({ endpoints: [etcd.endpoint], pair, timeoutMs: 1000, ...o });
  clients.push(a);
  return a;
}

describe('etcd arbiter', () => {
  arbiterContract(async () => {
    const pair = `contract-${++pairs}`;
    return [arbiter({}, pair), arbiter({}, pair)];
  }, 50);

  it('keeps pairs apart by name and refuses bad settings with a typed error', async () => {
    const [x, y] = [arbiter({}, 'apart-x'), arbiter({}, 'apart-y')];
    await x.compareAndSwap(null, { epoch: 7, holder: 'node-a' });
    expect(await y.read()).toBeNull();
    for (const bad of [{ endpoints: [] }, { endpoints: ['10.0.0.1:2379'] }, { pair: 'a/b' }, { endpoints: ['https://127.0.0.1:2379'] }] as Partial<EtcdArbiterOptions>[]) {
      expect(() => new EtcdArbiter({ endpoints: [etcd.endpoint], pair: 'ok', ...bad })).toThrow(expect.objectContaining({ code: ArbiterErrorCode.BAD_CONFIG }));
    }
  });

  it('node.role auto: two nodes of a new pair starting at once, each with its own client, give exactly one primary', async () => {
    const dirs = [mkdtempSync(join(tmpdir(), 'colo-etcd-role-')), mkdtempSync(join(tmpdir(), 'colo-etcd-role-'))];
    try {
      for (let round = 0; round < 10; round++) {
        const pair = `auto-${round}`;
        const [a, b] = [arbiter({}, pair), arbiter({}, pair)];
        const [da, db] = await Promise.all([
          decideStartRole({ nodeId: 'a', arbiter: a, stateDir: dirs[0]!, logger: quiet }),
          decideStartRole({ nodeId: 'b', arbiter: b, stateDir: dirs[1]!, logger: quiet }),
        ]);
        expect([da.role, db.role].sort()).toEqual(['primary', 'secondary']);
        expect(await a.read()).toEqual({ epoch: 0, holder: da.role === 'primary' ? 'a' : 'b' });
      }
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });

  it('refuses a record it did not write (CORRUPT_RECORD), leaving it for an operator', async () => {
    const raw = new Etcd3({ hosts: etcd.endpoint });
    clients.push(raw);
    const a = arbiter({}, 'corrupt');
    await raw.put(a.epochKey).value('three');
    await expect(a.read()).rejects.toMatchObject({ code: ArbiterErrorCode.CORRUPT_RECORD });
    await expect(a.compareAndSwap({ epoch: 3 }, { epoch: 4, holder: 'node-a' })).rejects.toMatchObject({ code: ArbiterErrorCode.CORRUPT_RECORD });
    // An epoch without a holder is not a record either.
    await raw.put(a.epochKey).value('3');
    await expect(a.read()).rejects.toMatchObject({ code: ArbiterErrorCode.CORRUPT_RECORD });
    expect(await raw.get(a.epochKey).string()).toBe('3');
    expect(await raw.get(a.holderKey).string()).toBeNull();
  });

  it('a member that stops is unreachable within the request timeout; a decision waits and is taken once it is back', async () => {
    const a = arbiter({}, 'restart');
    await a.compareAndSwap(null, { epoch: 2, holder: PAIR_HOLDER });
    await etcd.stop();
    try {
      const t0 = performance.now();
      const err = await a.read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ArbiterError);
      expect((err as ArbiterError).code).toBe(ArbiterErrorCode.UNREACHABLE);
      expect(performance.now() - t0).toBeLessThan(5000);
      const arbitration = new Arbitration(arbiter({}, 'restart'), quiet);
      const decision = arbitration.decide('node-b', 'secondary', 2);
      await new Promise((r) => setTimeout(r, 1500));
      expect(arbitration.status()).toMatchObject({ reachable: false, pending: 'promote', lastError: { code: ArbiterErrorCode.UNREACHABLE } });
      await etcd.restart();
      const d = await decision;
      expect(d).toMatchObject({ won: true, epoch: 3, current: { epoch: 3, holder: 'node-b' } });
      expect(d!.unanswered).toBeGreaterThan(0);
      // The record survived the restart (etcd's own data), and the old client works again too.
      expect(await a.read()).toEqual({ epoch: 3, holder: 'node-b' });
    } finally {
      await etcd.restart().catch(() => {});
    }
  }, 60_000);
});

describe('etcd arbiter with etcd users (auth enabled)', () => {
  let secured: EtcdServer;
  const rootPassword = 'root-password-for-tests';
  const coloPassword = 'colo-password-for-tests';
  beforeAll(async () => {
    // Tokens expire after 1 s: a node's session runs out between its requests, as after a long freeze.
    secured = await startEtcd({ args: ['--auth-token', 'simple', '--auth-token-ttl', '1'] });
    const admin = new Etcd3({ hosts: secured.endpoint });
    try {
      await admin.role('root').create();
      await admin.user('root').create(rootPassword);
      await admin.user('root').addRole('root');
      await admin.role('colo').create();
      await admin.role('colo').grant({ permission: 'Readwrite', range: Range.prefix('/colo/') });
      await admin.user('colo').create(coloPassword);
      await admin.user('colo').addRole('colo');
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
  }, 60_000);
  afterAll(async () => {
    await secured?.destroy();
  });
  const withAuth = (username: string, password: string, prefix?: string) => {
    const a = new EtcdArbiter({ endpoints: [secured.endpoint], pair: 'secured', timeoutMs: 2000, auth: { username, password }, prefix });
    clients.push(a);
    return a;
  };

  it('wrong credentials, an unknown user and a key outside the role are typed AUTH errors', async () => {
    await expect(withAuth('colo', 'wrong-password').read()).rejects.toMatchObject({ code: ArbiterErrorCode.AUTH });
    await expect(withAuth('nobody', 'whatever-password').read()).rejects.toMatchObject({ code: ArbiterErrorCode.AUTH });
    await expect(withAuth('colo', coloPassword, '/elsewhere').read()).rejects.toMatchObject({ code: ArbiterErrorCode.AUTH });
    const err = await withAuth('colo', 'wrong-password').read().catch((e: Error) => e);
    // Never the password itself in what an operator reads.
    expect(String(err.message)).not.toContain('wrong-password');
  });

  it('the right user decides, and keeps deciding after its session token expired', async () => {
    const a = withAuth('colo', coloPassword);
    expect((await a.compareAndSwap(null, { epoch: 0, holder: 'node-a' })).swapped).toBe(true);
    await new Promise((r) => setTimeout(r, 2500));
    const arbitration = new Arbitration(a, quiet);
    const d = await arbitration.decide('node-a', 'primary', 0);
    expect(d).toMatchObject({ won: true, epoch: 1 });
  }, 30_000);
});

describe('etcd arbiter over TLS with client certificates', () => {
  let pki: TestPki;
  let secure: EtcdServer;
  beforeAll(async () => {
    pki = makeTestPki();
    secure = await startEtcd({ tls: { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca1, ca: pki.ca1, client: pki.client } });
  }, 60_000);
  afterAll(async () => {
    await secure?.destroy();
    pki?.dispose();
  });
  const over = (tls: EtcdArbiterOptions['tls']) => {
    const a = new EtcdArbiter({ endpoints: [secure.endpoint], pair: 'tls', timeoutMs: 1500, tls });
    clients.push(a);
    return a;
  };

  it('decides with the CA and a client certificate the members trust', async () => {
    expect(secure.endpoint).toMatch(/^https:/);
    const a = over({ ca: pki.ca1, cert: pki.client.cert, key: pki.client.key });
    expect((await a.compareAndSwap(null, { epoch: 0, holder: 'node-a' })).swapped).toBe(true);
    expect(await a.read()).toEqual({ epoch: 0, holder: 'node-a' });
  });

  it('gets nothing with a certificate from another CA, or without one: a typed error, never an answer', async () => {
    for (const tls of [{ ca: pki.ca1, cert: pki.impostor.cert, key: pki.impostor.key }, { ca: pki.ca1 }]) {
      const err = await over(tls).read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ArbiterError);
      expect((err as ArbiterError).code).toBe(ArbiterErrorCode.AUTH);
    }
    // A member whose certificate another CA signed is not trusted either.
    const err = await over({ ca: pki.ca2, cert: pki.client.cert, key: pki.client.key }).read().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArbiterError);
    expect((err as ArbiterError).code).toBe(ArbiterErrorCode.AUTH);
  });
});
