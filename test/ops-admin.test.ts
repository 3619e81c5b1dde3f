import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { getStatus, type NodeStatusDoc } from '../packages/cli/src/client/admin-client.js';
import { startPair, type TestPair } from './support/pair.js';
import { waitFor } from './support/prometheus.js';
import { runColo as colo } from './support/cli.js';
import { coloBin } from './support/tools.js';
import { NODE_HEAP_FLAGS } from '../packages/cli/src/runtime/node-flags.js';

/**
 * The admin API and the operator commands against a real pair: mutating endpoints refuse a missing or wrong
 * token and then nothing happens; the right token works; `colo checkpoint|failover|status` behave as
 * docs/operations.md says; no node log ever holds the PSK or the admin token.
 * Ports: service 21200/21201, admin 21202/21203, replication 21204/21205.
 */
const BASE = 21200;
let pair: TestPair;

beforeAll(async () => {
  // No periodic checkpoints during the test (max_interval 10 min): checkpoint counts change only when we ask.
  // The secondary preallocates its guest memory (guest.prealloc, on by default: not set here, so the default is tested).
  pair = await startPair({ basePort: BASE, extra: { checkpoint: { max_interval: '10m' }, guest: { memory: '16MiB', dirty_rate: 0 } } });
  await pair.waitProtected(60_000);
});

afterAll(async () => {
  await pair?.stop();
});


/** What must not change when a request is refused: role, epoch, checkpoints, failovers, the process itself. */
async function snapshot() {
  return Promise.all(
    pair.sup.nodes.map(async (n, i) => {
      const s = await getStatus(pair.adminUrls[i]!);
      return { id: s.nodeId, role: s.role, state: s.state, epoch: s.epoch, protected: s.protected, checkpoints: s.checkpoints, failovers: s.failovers, lastSeq: s.lastCheckpoint?.seq, pid: n.process?.pid, restarts: n.restarts };
    }),
  );
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('operating a real pair through its admin API', () => {
  test('colo status --json lists both nodes with role, state, epoch and protection', async () => {
    const r = await colo(['status', '--json', '--node', pair.adminUrls[0], '--node', pair.adminUrls[1]]);
    expect(r.code, r.stderr).toBe(0);
    const nodes = JSON.parse(r.stdout) as (NodeStatusDoc & { node: string })[];
    expect(nodes.map((n) => [n.node, n.nodeId, n.role, n.epoch, n.protected])).toEqual([
      [pair.adminUrls[0], 'node-a', 'primary', 0, true],
      [pair.adminUrls[1], 'node-b', 'secondary', 0, true],
    ]);
    for (const n of nodes) expect(typeof n.state === 'string' && n.state.length > 0).toBe(true);
    // The human form says the same.
    const h = await colo(['status', '--node', pair.adminUrls[0], '--node', pair.adminUrls[1]]);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/node-a \(http:\/\/127\.0\.0\.1:21202\)\n {2}role +primary, protected/);
    expect(h.stdout).toMatch(/node-b \(http:\/\/127\.0\.0\.1:21203\)\n {2}role +secondary/);
    // The pause it prints is the guest's pause (the histogram's), not the checkpoint's whole duration.
    const lc = (await getStatus(pair.adminUrls[0])).lastCheckpoint!;
    expect(lc.pauseSeconds).toBeDefined();
    expect(h.stdout).toContain(`checkpoint  #${lc.seq} (${lc.reason})`);
    expect(h.stdout).toContain(`pause ${(lc.pauseSeconds! * 1000).toFixed(1)} ms`);
  });

  test('every mutating endpoint refuses a missing or wrong token with 401, and nothing happens', async () => {
    const before = await snapshot();
    const wrong: (Record<string, string> | undefined)[] = [
      undefined,
      { authorization: 'Bearer not-the-token' },
      { authorization: `Bearer ${pair.token}x` },
      { authorization: `Bearer ${pair.token.slice(0, -1)}` },
      { authorization: pair.token },
      { authorization: `Basic ${Buffer.from(`colo:${pair.token}`).toString('base64')}` },
      { authorization: 'Bearer ' },
    ];
    const answers: string[] = [];
    for (const url of pair.adminUrls) {
      for (const path of ['/checkpoint', '/failover', '/crash']) {
        for (const headers of wrong) {
          const res = await fetch(`${url}${path}`, { method: 'POST', headers, signal: AbortSignal.timeout(5000) });
          answers.push(`${url}${path} ${JSON.stringify(headers)} -> ${res.status}`);
          expect(res.status, answers.at(-1)).toBe(401);
          expect(await res.text()).not.toContain(pair.token);
        }
      }
    }
    // A crash or a failover would show within this time (the node dies at once; a promotion takes ms).
    await new Promise((r) => setTimeout(r, 1500));
    const after = await snapshot();
    expect(after, `logs in ${pair.dir}`).toEqual(before);
    for (const n of after) expect(alive(n.pid), `${n.id} pid ${n.pid}`).toBe(true);
  });

  test('colo checkpoint / colo failover without a token (or with a wrong one) exit 1 with ADMIN_UNAUTHORIZED', async () => {
    const before = await snapshot();
    const badFile = join(pair.dir, 'wrong-token');
    writeFileSync(badFile, 'definitely-wrong\n', { mode: 0o600 });
    for (const action of ['checkpoint', 'failover']) {
      for (const url of pair.adminUrls) {
        for (const extra of [[], ['--token-file', badFile]]) {
          const r = await colo([action, '--node', url, ...extra]);
          expect(r.code, `colo ${action} --node ${url} ${extra.join(' ')}: ${r.stderr}`).toBe(1);
          expect(r.stderr).toContain('ADMIN_UNAUTHORIZED');
          expect(r.stderr).toContain('401');
        }
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    expect(await snapshot(), `logs in ${pair.dir}`).toEqual(before);
  });

  test('with the right token POST /checkpoint takes one manual checkpoint', async () => {
    const before = await getStatus(pair.adminUrls[0]);
    const res = await fetch(`${pair.adminUrls[0]}/checkpoint`, { method: 'POST', headers: { authorization: `Bearer ${pair.token}` }, signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ok: boolean; checkpoint: { reason: string; seq: number } };
    expect(body.ok).toBe(true);
    expect(body.checkpoint.reason).toBe('manual');
    const after = await getStatus(pair.adminUrls[0]);
    expect(after.checkpoints!.manual).toBe(before.checkpoints!.manual! + 1);
    expect(after.lastCheckpoint!.seq).toBe(body.checkpoint.seq);
    expect(after.lastCheckpoint!.reason).toBe('manual');
    expect({ ...after.checkpoints, manual: 0 }).toEqual({ ...before.checkpoints, manual: 0 });
  });

  test('colo failover on the secondary promotes it (epoch +1); the old primary stops acting as primary; the pair re-protects', async () => {
    // Whichever node is primary now (a checkpoint bug in the coordinator can already have swapped them).
    const { index: pi } = await pair.waitProtected(30_000);
    const si = 1 - pi;
    const [p0, s0] = await Promise.all([getStatus(pair.adminUrls[pi]!), getStatus(pair.adminUrls[si]!)]);
    expect([p0.role, s0.role]).toEqual(['primary', 'secondary']);
    const r = await colo(['failover', '--node', pair.adminUrls[si]!, '--token-file', join(pair.dir, 'admin-token'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s1 = await getStatus(pair.adminUrls[si]!);
    expect(s1.role).toBe('primary');
    expect(s1.epoch).toBe(Math.max(p0.epoch, s0.epoch) + 1);
    expect(s1.failovers).toBe((s0.failovers as number) + 1);
    // docs/operations.md, "Fail over by hand": the old primary, on meeting the higher epoch, stops acting as
    // primary. Two primaries for longer than a few seconds is split brain (the ColoTwoPrimaries alert).
    const stepped = await waitFor('the old primary to stop acting as primary', 10_000, async () => {
      const a = await getStatus(pair.adminUrls[pi]!, 1000).catch(() => undefined);
      return a?.role === 'primary' ? undefined : (a ?? { role: 'unreachable' });
    }, 100).catch(async (e: Error) => {
      const all = await Promise.all(pair.adminUrls.map((u) => getStatus(u, 1000).catch(() => undefined)));
      throw new Error(`${e.message}; split brain: ${all.map((s) => s && `${s.nodeId} ${s.role} ${s.state} epoch ${s.epoch}`).join(' | ')}; logs in ${pair.dir}`);
    });
    expect(stepped.role).not.toBe('primary');
    // `colo pair` re-protects: the old primary comes back as the new primary's secondary.
    const p = await pair.waitProtected(30_000);
    expect(p.index).toBe(si);
    expect(p.status.epoch).toBe(s1.epoch);
    console.log(`manual failover: ${s0.nodeId} promoted to epoch ${s1.epoch}; old primary ${p0.nodeId} ${stepped.role} after; restarts ${pair.sup.nodes.map((n) => n.restarts).join('/')}`);
    const a2 = await getStatus(pair.adminUrls[pi]!);
    expect(a2.role).toBe('secondary');
  });

  test('no node log holds the PSK or the admin token', async () => {
    const psk = readFileSync(join(pair.dir, 'psk'), 'utf8').trim();
    expect(psk.length).toBeGreaterThan(20);
    const logs = readdirSync(pair.dir).filter((f) => /^node-.*\.log$/.test(f));
    expect(logs.sort()).toEqual(['node-a.log', 'node-b.log']);
    let bytes = 0;
    for (const f of logs) {
      const text = readFileSync(join(pair.dir, f), 'utf8');
      bytes += text.length;
      expect(text.includes(psk), `${f} contains the PSK`).toBe(false);
      expect(text.includes(pair.token), `${f} contains the admin token`).toBe(false);
      expect(text.includes(Buffer.from(psk, 'base64').toString('hex')), `${f} contains the PSK in hex`).toBe(false);
    }
    // The logs are not empty: the admin requests above (refused and accepted) were logged.
    expect(bytes).toBeGreaterThan(1000);
    expect(readFileSync(join(pair.dir, 'node-a.log'), 'utf8')).toContain('mutating admin request refused');
  });

  test('every node log line is one JSON object with no key twice (bindings of nested components)', () => {
    let lines = 0;
    for (const f of ['node-a.log', 'node-b.log']) {
      for (const line of readFileSync(join(pair.dir, f), 'utf8').split('\n').filter(Boolean)) {
        lines++;
        // JSON.parse keeps only the last of two equal keys: count the keys as written.
        const top = Object.keys(JSON.parse(line) as object);
        expect(topLevelKeyCount(line), `${f}: ${line.slice(0, 200)}`).toBe(top.length);
      }
    }
    expect(lines).toBeGreaterThan(10);
  });

  test('the nodes run with their heap flags; a node started without them says so in its log', async () => {
    for (const f of ['node-a.log', 'node-b.log']) {
      const text = readFileSync(join(pair.dir, f), 'utf8');
      expect(text).toContain('starting as');
      expect(text, f).not.toContain('runs without its heap flags');
    }
    // node-a's own config, other ports, started by hand without the flags: a lone primary.
    const config = readFileSync(join(pair.dir, 'node-a.yaml'), 'utf8')
      .replace(/^(\s*listen: 127\.0\.0\.1:)\d+$/gm, '$10')
      .replace(/^\s*peer: .*$/m, '');
    const file = join(pair.dir, 'lone.yaml');
    writeFileSync(file, config);
    const child = spawn(process.execPath, [coloBin, 'node', '--config', file, '--node-role', 'primary'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no warning within 20 s: ${out}`)), 20_000);
        const on = (d: Buffer) => {
          out += d;
          if (out.includes('runs without its heap flags')) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout.on('data', on);
        child.stderr.on('data', on);
        child.on('exit', (code) => reject(new Error(`colo node exited with ${code}: ${out}`)));
      });
    } finally {
      child.kill('SIGKILL');
    }
    const warning = out.split('\n').find((l) => l.includes('runs without its heap flags'))!;
    expect(JSON.parse(warning)).toMatchObject({ level: 'warn', missing: [...NODE_HEAP_FLAGS] });
  });

  test('guest.prealloc: the secondary commits its memory before it dials; memory it cannot get fails the start (exit 3)', async () => {
    // Each run of a node (the tests above fail over, so both logs hold runs in both roles): a run that starts as
    // secondary preallocates once, before its dialer logs anything; a run that starts as primary never does.
    let secondaryRuns = 0;
    for (const f of ['node-a.log', 'node-b.log']) {
      type Line = { msg: string; component?: string; bytes?: number; seconds?: number };
      const lines = readFileSync(join(pair.dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
      const runs: Line[][] = [];
      for (const l of lines) {
        if (l.msg.startsWith('starting as')) runs.push([]);
        runs.at(-1)?.push(l);
      }
      for (const run of runs) {
        const prealloc = run.filter((l) => l.msg === 'guest memory preallocated');
        if (run[0]!.msg === 'starting as primary') {
          expect(prealloc, f).toEqual([]);
          continue;
        }
        secondaryRuns++;
        expect(prealloc, `${f}: a secondary run without exactly one "guest memory preallocated"`).toHaveLength(1);
        expect(prealloc[0]).toMatchObject({ bytes: 16 * 1024 * 1024 });
        expect(prealloc[0]!.seconds).toBeGreaterThan(0);
        const dialed = run.findIndex((l) => l.component === 'transport-dialer');
        if (dialed >= 0) expect(run.indexOf(prealloc[0]!)).toBeLessThan(dialed);
        expect(run.some((l) => l.msg.includes('preallocated memory goes unused'))).toBe(false);
      }
    }
    expect(secondaryRuns).toBeGreaterThanOrEqual(1);

    // A secondary asking for more memory than the host gives it (here: an address-space limit of ~3 GB for a
    // 4 GiB guest) stops at once with the reason, before it dials anyone.
    const r = spawnSync('sh', ['-c', `ulimit -v 3000000 && exec "$0" "$@"`, process.execPath, coloBin, 'node', '--config', join(pair.dir, 'node-b.yaml'), '--node-role', 'secondary', '--guest-memory', '4GiB', '--replication-peer', 'ws://127.0.0.1:9'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(3);
    expect(r.stderr).toContain('could not start');
    expect(r.stderr).toContain('DOMAIN_MEMORY_UNAVAILABLE');
  });
});

/** The number of keys written at the top level of one JSON object text (duplicates counted). */
function topLevelKeyCount(text: string): number {
  let depth = 0;
  let keys = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      // A string at depth 1 followed by a colon is a key of the top-level object.
      let j = i + 1;
      while (text[j] === ' ') j++;
      if (depth === 1 && text[j] === ':' && start > 0) keys++;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}
