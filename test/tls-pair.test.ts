import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { killAll } from './support/children.js';
import { coloBin, repo } from './support/tools.js';

/**
 * A pair secured as the docs tell an operator (issue 24, item 4): certificates from `colo certs`, the links over
 * mutual TLS (wss://, no pre-shared key needed), the admin API over HTTPS, and the CLI trusting the pair's CA
 * through NODE_EXTRA_CA_CERTS. A node told to listen off loopback without TLS refuses to start. Ports 21820..21839.
 */
const TOKEN = 'tls-pair-admin-token-0123456789';
const pki = mkdtempSync(join(tmpdir(), 'colo-tls-pair-'));
const children: ChildProcess[] = [];

afterAll(async () => {
  await killAll(children);
});

function colo(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [coloBin, ...args], {
    cwd: repo,
    env: { ...process.env, COLO_ADMIN_TOKEN: '', COLO_ADMIN_TOKEN_FILE: '', COLO_NODES: '', COLO_REPLICATION_PSK: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return { child, done: new Promise((r) => child.once('exit', (code) => r({ code, stdout, stderr }))) };
}

function tlsFlags(name: string): string[] {
  const [cert, key] = [join(pki, `${name}.crt`), join(pki, `${name}.key`)];
  return ['--replication-tls-ca', join(pki, 'ca.crt'), '--replication-tls-cert', cert, '--replication-tls-key', key, '--admin-tls-cert', cert, '--admin-tls-key', key];
}

function node(role: 'primary' | 'secondary', name: string, base: number, peer?: number) {
  return colo(
    [
      role, '--node-id', name, '--guest-memory', '4MiB',
      '--replication-listen', `127.0.0.1:${base}`, '--service-listen', `127.0.0.1:${base + 1}`, '--admin-listen', `127.0.0.1:${base + 2}`,
      ...tlsFlags(name),
      ...(peer ? ['--replication-peer', `wss://localhost:${peer}`] : []),
    ],
    { COLO_ADMIN_TOKEN: TOKEN },
  );
}

const trusted = { NODE_EXTRA_CA_CERTS: join(pki, 'ca.crt') };

test('certificates from colo certs: a pair over mutual TLS, its admin API over HTTPS, the CLI trusting the pair\'s CA', async () => {
  const made = await colo(['certs', '--dir', pki, '--node', 'a=127.0.0.1,localhost', '--node', 'b=127.0.0.1,localhost']).done;
  expect(made.code, made.stderr).toBe(0);

  node('primary', 'a', 21820);
  const admins = ['--node', 'https://localhost:21822', '--node', 'https://localhost:21832'];
  for (const deadline = Date.now() + 20_000; ; ) {
    const r = await colo(['status', '--node', 'https://localhost:21822', '--json'], trusted).done;
    if (r.code === 0 && JSON.parse(r.stdout)[0].listening) break;
    if (Date.now() > deadline) throw new Error(`the primary did not come up over HTTPS: ${r.stdout} ${r.stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  node('secondary', 'b', 21830, 21820);
  for (const deadline = Date.now() + 30_000; ; ) {
    const r = await colo(['status', ...admins, '--json'], trusted).done;
    if (r.code === 0 && (JSON.parse(r.stdout) as { protected: boolean }[]).every((s) => s.protected)) break;
    if (Date.now() > deadline) throw new Error(`the pair did not protect over TLS: ${r.stdout} ${r.stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // A mutating request over HTTPS with the token.
  const cp = await colo(['checkpoint', '--node', 'https://localhost:21822'], { ...trusted, COLO_ADMIN_TOKEN: TOKEN }).done;
  expect(cp.code, cp.stderr).toBe(0);
  // Without the CA the CLI refuses the node's certificate; plain HTTP gets no answer from an HTTPS port.
  expect((await colo(['status', '--node', 'https://localhost:21822']).done).code).toBe(3);
  expect((await colo(['status', '--node', 'http://localhost:21822'], trusted).done).code).toBe(3);
}, 90_000);

test('a node that would listen off loopback without TLS refuses to start (exit 2, CONFIG_INSECURE), or warns when told to accept it', async () => {
  const refused = await colo(['primary', '--guest-memory', '4MiB', '--replication-listen', '0.0.0.0:21836', '--service-listen', '127.0.0.1:21837', '--admin-listen', '127.0.0.1:21838'], { COLO_REPLICATION_PSK: 'a-psk-of-more-than-16-characters' }).done;
  expect(refused.code).toBe(2);
  expect(refused.stderr).toMatch(/guest memory and client data in clear.*\(CONFIG_INSECURE\)/);
  const accepted = colo(['primary', '--guest-memory', '4MiB', '--replication-listen', '0.0.0.0:21836', '--service-listen', '127.0.0.1:21837', '--admin-listen', '127.0.0.1:21838', '--replication-allow-cleartext', 'true'], { COLO_REPLICATION_PSK: 'a-psk-of-more-than-16-characters' });
  let log = '';
  accepted.child.stdout!.on('data', (d) => (log += d));
  for (const deadline = Date.now() + 20_000; !/allow_cleartext: the links leave this host without TLS/.test(log); ) {
    if (Date.now() > deadline) throw new Error(`no warning: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(JSON.parse(log.split('\n').find((l) => l.includes('allow_cleartext: the links'))!).level).toBe('warn');
}, 60_000);
