import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import { expect, test } from 'vitest';
import { childLogger, createLogger } from '../../src/observability/logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l));
      }
      cb();
    },
  });
  return { lines, raw, destination };
}

test('log lines are JSON with node, pid, hostname, role, epoch and component bindings', () => {
  const { lines, destination } = capture();
  const log = createLogger({ nodeId: 'node-a', destination });
  log.child({ role: 'primary', epoch: 3, component: 'checkpoint' }).info({ seq: 7 }, 'checkpoint done');
  expect(lines[0]).toMatchObject({ level: 'info', node: 'node-a', pid: process.pid, hostname: hostname(), role: 'primary', epoch: 3, component: 'checkpoint', seq: 7, msg: 'checkpoint done' });
});

test('secrets are redacted wherever they appear', () => {
  const { raw, destination } = capture();
  const log = createLogger({ nodeId: 'n', destination });
  log.info({ psk: 'SECRET-PSK-1', config: { token: 'SECRET-TOKEN-2', tls: { key: 'SECRET-KEY-3' } }, req: { headers: { authorization: 'Bearer SECRET-4' } } }, 'config loaded');
  log.child({ security: { psk: 'SECRET-PSK-5' } }).warn('peer refused');
  const text = raw.join('\n');
  for (const s of ['SECRET-PSK-1', 'SECRET-TOKEN-2', 'SECRET-KEY-3', 'SECRET-4', 'SECRET-PSK-5']) expect(text).not.toContain(s);
  expect(text).toContain('[redacted]');
});

test('the level comes from configuration', () => {
  const { lines, destination } = capture();
  const log = createLogger({ nodeId: 'n', level: 'warn', destination });
  log.info('hidden');
  log.warn('shown');
  expect(lines.map((l) => l.msg)).toEqual(['shown']);
});

test('childLogger binds only keys its parent does not carry, so no key is written twice', () => {
  const { raw, lines, destination } = capture();
  const root = createLogger({ nodeId: 'node-a', destination });
  const transport = childLogger(childLogger(root, { node: 'node-a' }), { component: 'transport' });
  childLogger(transport, { component: 'transport-dialer', channel: 'main' }).info('dialing');
  expect(raw[0]!.match(/"component"/g)).toHaveLength(1);
  expect(raw[0]!.match(/"node"/g)).toHaveLength(1);
  expect(lines[0]).toMatchObject({ node: 'node-a', component: 'transport', channel: 'main', msg: 'dialing' });
});
