import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { NODE_DEFAULTS } from '@colo/coordinator';
import { PassThrough } from 'node:stream';
import certs from '../src/commands/certs.js';
import { configurationTable } from '../src/config/docs.js';
import { ConfigError, loadConfig, redactedConfig, requireForRole } from '../src/config/load.js';

const repo = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'colo-config-'));
const pskFile = join(dir, 'psk');
writeFileSync(pskFile, 'a-very-secret-pre-shared-key-0123\n');

function yaml(text: string): string {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return f;
}

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  test('defaults apply when nothing is given', () => {
    const c = loadConfig({});
    expect(c.node.mode).toBe('colo');
    expect(c.guest.memoryBytes).toBe(256 * 1024 * 1024);
    expect(c.guest.prealloc).toBe(true);
    expect(c.heartbeat).toEqual({ intervalMs: 100, timeoutMs: 1000 });
    expect(c.checkpoint.remusIntervalMs).toBe(200);
    expect(c.admin.listen).toEqual({ host: '127.0.0.1', port: 9464 });
  });

  test("every default is the library's own (NODE_DEFAULTS): a node built with the library behaves as `colo node`", () => {
    const c = loadConfig({});
    const d = NODE_DEFAULTS;
    expect(c.heartbeat).toEqual(d.heartbeat);
    expect(c.checkpoint).toEqual(d.checkpoint);
    expect(c.output).toEqual(d.output);
    expect(c.remus).toEqual(d.remus);
    expect(c.replication).toMatchObject(d.replication);
    expect(loadConfig({ flags: { 'arbiter.kind': 'local', 'arbiter.endpoints': '/tmp/a.sock' } }).arbiter).toMatchObject(d.arbiter);
    // And the library applies the same table (packages/coordinator/test/defaults.test.ts).
  });

  test('the phase and the stall timeouts are two settings; max_frame is at least the links\' 1 MiB messages', () => {
    const c = loadConfig({ flags: { 'checkpoint.phase_timeout': '30s', 'checkpoint.stall_timeout': '2s' } });
    expect(c.checkpoint).toMatchObject({ phaseTimeoutMs: 30_000, stallTimeoutMs: 2000 });
    expect(loadConfig({ flags: { 'replication.max_frame': '1MiB' } }).replication.maxFrameBytes).toBe(1024 * 1024);
    expect(configError(() => loadConfig({ flags: { 'replication.max_frame': '512KiB' } }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'replication.max_frame' });
  });

  test('the arbiter: none by default, local needs the path of its socket', () => {
    expect(loadConfig({}).arbiter).toEqual({ kind: 'none' });
    expect(loadConfig({ file: yaml('arbiter:\n  kind: local\n  endpoints: unix:/run/colo/arbiter.sock\n') }).arbiter).toEqual({ kind: 'local', socketPath: '/run/colo/arbiter.sock', timeoutMs: 2000 });
    expect(loadConfig({ env: { COLO_ARBITER_KIND: 'local', COLO_ARBITER_ENDPOINTS: '/tmp/a.sock', COLO_ARBITER_TIMEOUT: '500ms' } }).arbiter).toEqual({ kind: 'local', socketPath: '/tmp/a.sock', timeoutMs: 500 });
    expect(configError(() => loadConfig({ flags: { 'arbiter.kind': 'local' } }))).toMatchObject({ code: 'CONFIG_MISSING', field: 'arbiter.endpoints' });
    expect(configError(() => loadConfig({ flags: { 'arbiter.kind': 'local', 'arbiter.endpoints': 'http://host:2379' } }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'arbiter.endpoints' });
    expect(configError(() => loadConfig({ flags: { 'arbiter.kind': 'zookeeper' } }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'arbiter.kind' });
  });

  test('the etcd arbiter: endpoints, pair, TLS and users as etcd users give them; secrets redacted', () => {
    const passwordFile = join(dir, 'etcd-password');
    writeFileSync(passwordFile, 'etcd-secret-password\n');
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const c = loadConfig({
      file: yaml(`arbiter:\n  kind: etcd\n  endpoints: https://10.0.0.1:2379, https://10.0.0.2:2379,https://10.0.0.3:2379\n  pair: shop-db\n  tls_ca: ${caFile}\n  username: colo\n  password_file: ${passwordFile}\n`),
    });
    expect(c.arbiter).toMatchObject({ kind: 'etcd', endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379', 'https://10.0.0.3:2379'], pair: 'shop-db', timeoutMs: 2000, auth: { username: 'colo', password: 'etcd-secret-password' } });
    const shown = JSON.stringify(redactedConfig(c));
    expect(shown).not.toContain('etcd-secret-password');
    expect(shown).toContain('[redacted]');
    expect(loadConfig({ flags: { 'arbiter.kind': 'etcd', 'arbiter.endpoints': 'http://127.0.0.1:2379' } }).arbiter).toMatchObject({ pair: 'colo', endpoints: ['http://127.0.0.1:2379'] });
    const etcd = (more: Record<string, string>) => loadConfig({ flags: { 'arbiter.kind': 'etcd', 'arbiter.endpoints': 'http://127.0.0.1:2379', ...more } });
    expect(configError(() => loadConfig({ flags: { 'arbiter.kind': 'etcd' } }))).toMatchObject({ code: 'CONFIG_MISSING', field: 'arbiter.endpoints' });
    expect(configError(() => etcd({ 'arbiter.endpoints': '10.0.0.1:2379' }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'arbiter.endpoints' });
    expect(configError(() => etcd({ 'arbiter.endpoints': 'https://10.0.0.1:2379' }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'arbiter.tls_ca' });
    expect(configError(() => etcd({ 'arbiter.pair': 'a/b' }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'arbiter.pair' });
    expect(configError(() => etcd({ 'arbiter.username': 'colo' }))).toMatchObject({ code: 'CONFIG_MISSING', field: 'arbiter.password_file' });
    expect(configError(() => etcd({ 'arbiter.timeout': '0s' }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'arbiter.timeout' });
  });

  test('replication.max_bandwidth: bytes per second, unset means no limit, under 1 MiB/s refused', () => {
    expect(loadConfig({}).replication.maxBandwidth).toBeUndefined();
    expect(loadConfig({ flags: { 'replication.max_bandwidth': '125MB' } }).replication.maxBandwidth).toBe(125_000_000);
    expect(configError(() => loadConfig({ flags: { 'replication.max_bandwidth': '512KiB' } }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'replication.max_bandwidth' });
  });

  test('remus.blackhole: a Remus primary only', () => {
    expect(loadConfig({}).remus.blackhole).toBe(false);
    expect(loadConfig({ flags: { 'node.mode': 'remus', 'remus.blackhole': 'true' } }).remus.blackhole).toBe(true);
    expect(configError(() => loadConfig({ flags: { 'remus.blackhole': 'true' } }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'remus.blackhole' });
    expect(configError(() => loadConfig({ flags: { 'node.mode': 'remus', 'node.role': 'secondary', 'remus.blackhole': 'true' } }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'remus.blackhole' });
  });

  test('file < environment < flags', () => {
    const file = yaml('node:\n  role: primary\n  mode: remus\nguest:\n  memory: 64MiB\nheartbeat:\n  interval: 50ms\n  timeout: 2s\n');
    const c = loadConfig({ file, env: { COLO_GUEST_MEMORY: '128MiB', COLO_HEARTBEAT_TIMEOUT: '3s', COLO_GUEST_PREALLOC: 'false' }, flags: { 'heartbeat.timeout': '4s' } });
    expect(c.guest.prealloc).toBe(false);
    expect(c.node).toMatchObject({ role: 'primary', mode: 'remus' });
    expect(c.guest.memoryBytes).toBe(128 * 1024 * 1024);
    expect(c.heartbeat).toEqual({ intervalMs: 50, timeoutMs: 4000 });
  });

  test('the shipped example configs for two hosts load, with certificates from colo certs (TLS off loopback)', async () => {
    const pki = mkdtempSync(join(tmpdir(), 'colo-pki-'));
    const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough() };
    expect(await certs.run(['--dir', pki, '--node', 'host-a=10.0.0.1,host-a.example.net', '--node', 'host-b=10.0.0.2,host-b.example.net'], io)).toBe(0);
    for (const host of ['host-a', 'host-b']) {
      const tls = { cert: join(pki, `${host}.crt`), key: join(pki, `${host}.key`) };
      const c = loadConfig({
        file: join(repo, `deploy/examples/${host}.yaml`),
        flags: {
          'replication.psk_file': pskFile,
          'replication.tls_ca': join(pki, 'ca.crt'),
          'replication.tls_cert': tls.cert,
          'replication.tls_key': tls.key,
          'admin.tls_cert': tls.cert,
          'admin.tls_key': tls.key,
          'admin.token': 'an-admin-token-of-24-chars',
          'arbiter.tls_ca': pskFile,
          'arbiter.password_file': pskFile,
        },
      });
      requireForRole(c);
      expect(c.replication.tls).toBeDefined();
      expect(c.replication.peer).toMatch(/^wss:\/\//);
      expect(c.admin.tls).toBeDefined();
      expect(c.node).toMatchObject({ id: host, role: 'auto', stateDir: '/var/lib/colo' });
      expect(c.arbiter).toMatchObject({ kind: 'etcd', pair: 'colo', auth: { username: 'colo' } });
      expect(c.arbiter.kind === 'etcd' && c.arbiter.endpoints).toHaveLength(3);
    }
  });

  test('off loopback the links need TLS and an admin API with a token HTTPS, unless the operator accepts clear text', () => {
    const psk = { 'replication.psk_file': pskFile };
    expect(configError(() => loadConfig({ flags: { ...psk, 'replication.listen': '0.0.0.0:7800' } }))).toMatchObject({ code: 'CONFIG_INSECURE', field: 'replication.tls_cert' });
    expect(configError(() => loadConfig({ flags: { ...psk, 'replication.peer': 'ws://10.0.0.1:7800' } }))).toMatchObject({ code: 'CONFIG_INSECURE', field: 'replication.tls_cert' });
    expect(loadConfig({ flags: { ...psk, 'replication.listen': '0.0.0.0:7800', 'replication.allow_cleartext': 'true' } }).replication.cleartextOffLoopback).toBe(true);
    // Loopback and localhost: a pre-shared key alone is fine (nothing leaves the host).
    expect(loadConfig({ flags: { ...psk, 'replication.peer': 'ws://localhost:7800' } }).replication.cleartextOffLoopback).toBe(false);
    const admin = { 'admin.listen': '0.0.0.0:9464', 'admin.token': 'an-admin-token-of-24-chars' };
    expect(configError(() => loadConfig({ flags: { ...psk, ...admin } }))).toMatchObject({ code: 'CONFIG_INSECURE', field: 'admin.tls_cert' });
    expect(loadConfig({ flags: { ...psk, ...admin, 'admin.allow_cleartext': 'true' } }).admin.cleartextOffLoopback).toBe(true);
    // Without a token the admin API has no secret to leak (and no mutating endpoint).
    expect(loadConfig({ flags: { ...psk, 'admin.listen': '0.0.0.0:9464' } }).admin.cleartextOffLoopback).toBe(false);
    expect(configError(() => loadConfig({ flags: { ...psk, 'admin.tls_cert': pskFile } }))).toMatchObject({ code: 'CONFIG_MISSING', field: 'admin.tls_key' });
  });

  test.each([
    ['node:\n  mode: paxos\n', 'node.mode', 'one of colo, remus'],
    ['guest:\n  memory: lots\n', 'guest.memory', 'a size such as'],
    ['guest:\n  memory: 1000\n', 'guest.memory', 'multiple of 4 KiB'],
    ['guest:\n  prealloc: yes please\n', 'guest.prealloc', 'true or false'],
    ['heartbeat:\n  interval: 500ms\n  timeout: 600ms\n', 'heartbeat.timeout', 'at least twice'],
    ['heartbeat:\n  interval: soon\n', 'heartbeat.interval', 'a duration such as'],
    ['replication:\n  listen: localhost\n', 'replication.listen', 'HOST:PORT'],
    ['replication:\n  peer: http://x:1\n', 'replication.peer', 'ws://'],
    ['replication:\n  lisen: 0.0.0.0:1\n', 'replication.lisen', 'replication has: listen'],
    ['replicaton:\n  listen: 0.0.0.0:1\n', 'replicaton', 'unknown section'],
    ['node: [1, 2]\n', 'node', 'must be a mapping'],
    ['node:\n  role: primary\n bad-indent: x\n', '', 'not valid YAML'],
    ['replication:\n  tls_cert: /x.pem\n', 'replication.tls_key', 'tls_cert, tls_key and tls_ca together'],
    ['replication:\n  psk: short\n', 'replication.psk', 'shorter than 16'],
    ['replication:\n  psk_file: /nonexistent/psk\n', 'replication.psk_file', 'ENOENT'],
  ])('invalid config %j names %s and the fix', (text, field, hint) => {
    const file = yaml(text);
    const e = configError(() => loadConfig({ file }));
    if (field) expect(e.field).toBe(field);
    expect(e.message).toContain(hint);
    expect(e.code).toMatch(/^CONFIG_/);
  });

  test('a bad environment value names the variable it came from', () => {
    const e = configError(() => loadConfig({ env: { COLO_CHECKPOINT_MAX_INTERVAL: 'forever' } }));
    expect(e.field).toBe('checkpoint.max_interval');
    expect(e.message).toContain('COLO_CHECKPOINT_MAX_INTERVAL');
  });

  test('a secondary without a peer or a node without a key is refused before starting', () => {
    expect(configError(() => requireForRole(loadConfig({ flags: { 'node.role': 'secondary', 'replication.psk_file': pskFile } }))).field).toBe('replication.peer');
    expect(configError(() => requireForRole(loadConfig({ flags: { 'node.role': 'primary' } }))).field).toBe('replication.psk_file');
    expect(configError(() => requireForRole(loadConfig({}))).field).toBe('node.role');
  });

  test('node.role auto needs an arbiter, a state directory and the peer: either role may come out of it', () => {
    const auto = { 'node.role': 'auto', 'replication.psk_file': pskFile, 'arbiter.kind': 'local', 'arbiter.endpoints': 'unix:/run/colo/a.sock', 'node.state_dir': '/var/lib/colo', 'replication.peer': 'ws://127.0.0.1:7801' };
    expect(() => requireForRole(loadConfig({ flags: auto }))).not.toThrow();
    const { 'arbiter.endpoints': _e, ...noArbiter } = auto;
    expect(configError(() => requireForRole(loadConfig({ flags: { ...noArbiter, 'arbiter.kind': 'none' } })))).toMatchObject({ code: 'CONFIG_INVALID', field: 'node.role' });
    const { 'node.state_dir': _d, ...noState } = auto;
    expect(configError(() => requireForRole(loadConfig({ flags: noState })))).toMatchObject({ code: 'CONFIG_MISSING', field: 'node.state_dir' });
    const { 'replication.peer': _p, ...noPeer } = auto;
    expect(configError(() => requireForRole(loadConfig({ flags: noPeer })))).toMatchObject({ code: 'CONFIG_MISSING', field: 'replication.peer' });
    expect(configError(() => loadConfig({ flags: { ...auto, 'node.mode': 'remus', 'remus.blackhole': 'true' } }))).toMatchObject({ code: 'CONFIG_INVALID', field: 'remus.blackhole' });
  });

  test('secrets never appear in the printable config', () => {
    const c = loadConfig({ flags: { 'replication.psk_file': pskFile, 'admin.token': 'an-admin-token-of-24-chars' } });
    const text = JSON.stringify(redactedConfig(c));
    expect(text).not.toContain('a-very-secret');
    expect(text).not.toContain('an-admin-token');
    expect(text).toContain('[redacted]');
  });

  test('docs/configuration.md carries the generated table of every setting', () => {
    const doc = readFileSync(join(repo, 'docs/configuration.md'), 'utf8');
    expect(doc).toContain(configurationTable());
  });
});
