import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { repo } from './support/tools.js';

/**
 * The installable artefact (issue 24, item 2): `npm run artefact` packs one tarball that unpacks into a prefix
 * with bin/colo (the CLI and the node in one file), the units, the sysusers.d and tmpfiles.d entries, examples
 * and docs. Unpacked outside the repository, it runs a pair on its own; systemd's tools create its user and
 * directories from its files. Ports 21860..21869.
 */
const out = mkdtempSync(join(tmpdir(), 'colo-artefact-'));
const prefix = join(out, 'prefix');
const version = JSON.parse(readFileSync(join(repo, 'packages/cli/package.json'), 'utf8')).version as string;
let stopPair: (() => void) | undefined;

beforeAll(() => {
  execFileSync(process.execPath, [join(repo, 'scripts/artefact.mjs'), out], { cwd: repo, stdio: 'pipe' });
  mkdirSync(prefix);
  execFileSync('tar', ['-C', prefix, '-xzf', join(out, `colo-${version}-linux.tar.gz`)]);
}, 120_000);

afterAll(() => stopPair?.());

test('the tarball unpacks into a prefix: bin/colo, the units, sysusers.d and tmpfiles.d, examples, docs', () => {
  for (const f of ['bin/colo', 'lib/systemd/system/colo-node.service', 'lib/systemd/system/colo-secondary@.service', 'lib/sysusers.d/colo.conf', 'lib/tmpfiles.d/colo.conf', 'share/colo/examples/host-a.yaml', 'share/colo/examples/colo-move-vip', 'share/colo/prometheus/colo-alerts.yml', 'share/colo/grafana/colo-pair.json', 'share/doc/colo/operations.md', 'share/doc/colo/THIRD-PARTY-NOTICES.txt']) {
    expect(statSync(join(prefix, f)).isFile(), f).toBe(true);
  }
  expect(statSync(join(prefix, 'bin/colo')).mode & 0o111).toBe(0o111);
  // One file: nothing of this checkout in it.
  expect(readFileSync(join(prefix, 'bin/colo'), 'utf8')).not.toContain(repo);
  expect(execFileSync(join(prefix, 'bin/colo'), ['--version'], { cwd: out, encoding: 'utf8' }).trim()).toBe(`colo ${version}`);
});

test('systemd-sysusers and systemd-tmpfiles make the colo user and its directories from the artefact\'s files', () => {
  const root = join(out, 'root');
  for (const d of ['etc', 'usr/lib/sysusers.d', 'usr/lib/tmpfiles.d']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(join(prefix, 'lib/sysusers.d/colo.conf'), join(root, 'usr/lib/sysusers.d/colo.conf'));
  copyFileSync(join(prefix, 'lib/tmpfiles.d/colo.conf'), join(root, 'usr/lib/tmpfiles.d/colo.conf'));
  execFileSync('systemd-sysusers', [`--root=${root}`], { stdio: 'pipe' });
  const user = readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('colo:'))!;
  const [, , uid, gid, , home, shell] = user.split(':');
  expect({ home, shell }).toEqual({ home: '/var/lib/colo', shell: '/usr/sbin/nologin' });
  expect(readFileSync(join(root, 'etc/group'), 'utf8')).toMatch(new RegExp(`^colo:x:${gid}:`, 'm'));
  execFileSync('systemd-tmpfiles', [`--root=${root}`, '--create'], { stdio: 'pipe' });
  const own = (p: string) => {
    const s = statSync(join(root, p));
    return { uid: s.uid, gid: s.gid, mode: (s.mode & 0o777).toString(8) };
  };
  expect(own('etc/colo')).toEqual({ uid: 0, gid: Number(gid), mode: '750' });
  expect(own('etc/colo/tls')).toEqual({ uid: 0, gid: Number(gid), mode: '750' });
  expect(own('var/lib/colo')).toEqual({ uid: Number(uid), gid: Number(gid), mode: '750' });
});

test('bin/colo from the unpacked artefact, outside the checkout, runs a protected pair and stops it', async () => {
  const colo = join(prefix, 'bin/colo');
  const child = spawn(colo, ['pair', '--json', '--dir', join(out, 'pair'), '--memory', '4MiB', '--service-port', '21860', '--admin-port', '21862', '--replication-port', '21864'], { cwd: out, stdio: ['ignore', 'pipe', 'pipe'] });
  stopPair = () => child.kill('SIGKILL');
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  for (const deadline = Date.now() + 60_000; !stdout.includes('"ready":true'); ) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no ready banner: ${stdout}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const status = execFileSync(colo, ['status', '--node', 'http://127.0.0.1:21862', '--node', 'http://127.0.0.1:21863', '--json'], { cwd: out, encoding: 'utf8' });
  expect((JSON.parse(status) as { role: string; protected: boolean }[]).map((s) => [s.role, s.protected]).sort()).toEqual([['primary', true], ['secondary', true]]);
  child.kill('SIGINT');
  expect(await exited).toBe(0);
}, 90_000);
