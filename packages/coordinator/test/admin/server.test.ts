import { afterEach, describe, expect, test } from 'vitest';
import { Registry } from 'prom-client';
import { startAdminServer, type AdminServer, type AdminTarget } from '../../src/admin/server.js';
import { silentLogger } from '../../src/observability/logger.js';

const TOKEN = 'test-admin-token-0123456789';

function target(serving = true) {
  const calls: string[] = [];
  const registry = new Registry();
  const t: AdminTarget = {
    status: () => ({ role: 'primary', epoch: 1 }),
    ready: () => true,
    serving: () => serving,
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    checkpoint: async () => { calls.push('checkpoint'); return { seq: 1 }; },
    failover: async () => { calls.push('failover'); return { role: 'primary' }; },
    crash: () => { calls.push('crash'); },
  };
  return { t, calls };
}

let server: AdminServer | undefined;
afterEach(async () => server?.close());

describe('admin API', () => {
  test('reads are open: status, healthz, readyz, metrics', async () => {
    const { t } = target();
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, target: t, logger: silentLogger() });
    expect(await (await fetch(`${server.url}/status`)).json()).toEqual({ role: 'primary', epoch: 1 });
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${server.url}/metrics`)).headers.get('content-type')).toContain('text/plain');
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
  });

  test('GET /primary: 200 only on the node serving as primary (a synchronised secondary is ready, not primary)', async () => {
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, target: target(true).t, logger: silentLogger() });
    expect((await fetch(`${server.url}/primary`)).status).toBe(200);
    await server.close();
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, target: target(false).t, logger: silentLogger() });
    const r = await fetch(`${server.url}/primary`);
    expect(r.status).toBe(503);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
  });

  test('POST /crash is off unless enabled (admin.allow_crash): 403 with the right token too, and the node lives', async () => {
    const off = target();
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, target: off.t, logger: silentLogger() });
    const r = await fetch(`${server.url}/crash`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.status).toBe(403);
    expect(await r.json()).toMatchObject({ error: 'crash_disabled' });
    expect(off.calls).toEqual([]);
    await server.close();
    const on = target();
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, allowCrash: true, target: on.t, logger: silentLogger() });
    expect((await fetch(`${server.url}/crash`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 50));
    expect(on.calls).toEqual(['crash']);
  });

  test.each(['/checkpoint', '/failover', '/crash'])('POST %s refuses a missing or wrong token, and nothing happens', async (path) => {
    const { t, calls } = target();
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, allowCrash: true, target: t, logger: silentLogger() });
    for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }, { authorization: `Bearer ${TOKEN}x` }]) {
      const res = await fetch(`${server.url}${path}`, { method: 'POST', headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
    }
    expect((await fetch(`${server.url}${path}`)).status).toBe(405);
    expect(calls).toEqual([]);
    const ok = await fetch(`${server.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBeLessThan(300);
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toEqual([path.slice(1)]);
  });

  test('with no token configured the mutating endpoints are disabled, not open', async () => {
    const { t, calls } = target();
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: undefined, target: t, logger: silentLogger() });
    const res = await fetch(`${server.url}/failover`, { method: 'POST', headers: { authorization: 'Bearer anything' } });
    expect(res.status).toBe(403);
    expect(calls).toEqual([]);
  });

  test('readyz reports 503 when the node is not ready', async () => {
    const { t } = target();
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, target: { ...t, ready: () => false }, logger: silentLogger() });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
  });

  test('a request the node cannot honour now answers 409 with the stable code, not 500', async () => {
    const { t } = target();
    const refusing: AdminTarget = {
      ...t,
      checkpoint: async () => {
        throw Object.assign(new Error('no synchronised secondary'), { code: 'COLO_UNPROTECTED' });
      },
    };
    server = await startAdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, target: refusing, logger: silentLogger() });
    const res = await fetch(`${server.url}/checkpoint`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ ok: false, error: 'COLO_UNPROTECTED' });
  });
});
