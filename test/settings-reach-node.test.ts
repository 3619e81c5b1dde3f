import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, expect, test } from 'vitest';
import WebSocket from 'ws';
import { listenScripted } from '../packages/coordinator/test/node/scripted-primary.js';
import { coloBin, repo } from './support/tools.js';

/**
 * Settings reach the part of a `colo node` process that acts on them (the process as an operator starts it):
 * replication.max_frame bounds the WebSocket messages the links accept, and checkpoint.stall_timeout, apart
 * from checkpoint.phase_timeout, bounds how long a secondary waits for the rest of a record. Both were parsed
 * and documented and then lost on the way (max_frame never reached the transport; the stall timeout was the
 * phase timeout). Ports 21670..21689.
 */
const PSK = 'settings-reach-node-psk-0123456789';
const nodes: ChildProcess[] = [];

afterEach(async () => {
  for (const child of nodes.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
});

/** `colo node` with `args`; resolves once its log says `ready` (or rejects with its output after 20 s). */
function startNode(args: string[], ready: RegExp): Promise<{ child: ChildProcess; log: () => string }> {
  const child = spawn(process.execPath, [coloBin, 'node', '--log-level', 'debug', ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, COLO_REPLICATION_PSK: PSK, COLO_ADMIN_TOKEN: '', COLO_ADMIN_TOKEN_FILE: '' },
  });
  nodes.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${ready} within 20 s:\n${out}`)), 20_000);
    const check = () => {
      if (!ready.test(out)) return;
      clearTimeout(timer);
      resolve({ child, log: () => out });
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', (code) => reject(new Error(`colo node exited (${code}):\n${out}`)));
  });
}

/** Sends one binary message of `bytes` to the replication listener before any handshake; resolves with the close code. */
function closeCodeForMessage(port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    const timer = setTimeout(() => reject(new Error('the listener neither closed nor refused within 10 s')), 10_000);
    ws.on('open', () => ws.send(Buffer.alloc(bytes, 7)));
    ws.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    ws.on('error', () => {});
  });
}

test.each([
  ['1MiB', 1009],
  ['16MiB', 'another'],
] as const)('replication.max_frame %s: a 1.5 MiB message from a peer is refused as too big (1009) only under the limit', async (limit, expected) => {
  const port = limit === '1MiB' ? 21670 : 21676;
  await startNode(
    ['--node-role', 'primary', '--guest-memory', '4MiB', '--replication-listen', `127.0.0.1:${port}`, '--service-listen', `127.0.0.1:${port + 1}`, '--admin-listen', `127.0.0.1:${port + 2}`, '--replication-max-frame', limit],
    /listening for a secondary/,
  );
  const code = await closeCodeForMessage(port, 1.5 * 1024 * 1024);
  if (expected === 1009) expect(code).toBe(1009);
  else expect(code).not.toBe(1009);
});

test('checkpoint.stall_timeout, not phase_timeout, bounds a primary that stops streaming', async () => {
  // A primary that sends the stream's head and then half a PAGE_DATA record, and nothing more (its link stays up:
  // the transport keeps answering heartbeats).
  const scripted = await listenScripted({
    mode: 'remus',
    psk: new TextEncoder().encode(PSK),
    pages: 1024,
    heartbeat: { intervalMs: 100, timeoutMs: 1000 },
    script: async (p) => {
      const record = p.pages([0, 1, 2, 3]);
      await p.send(p.headers());
      await p.send(record.subarray(0, record.length >> 1));
    },
  });
  try {
    const port = scripted.server.url.split(':').at(-1)!;
    const started = Date.now();
    const node = await startNode(
      [
        '--node-role', 'secondary', '--node-mode', 'remus', '--guest-memory', '4MiB', '--guest-prealloc', 'false',
        '--replication-peer', `ws://127.0.0.1:${port}`, '--replication-listen', '127.0.0.1:21680', '--service-listen', '127.0.0.1:21681', '--admin-listen', '127.0.0.1:21682',
        '--checkpoint-phase-timeout', '60s', '--checkpoint-stall-timeout', '1s',
      ],
      /the primary stalled/,
    );
    // Well inside the phase timeout: the stall timeout fired (the secondary halts: it has no checkpoint to run).
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(node.log()).toMatch(/COLO_PHASE_TIMEOUT/);
  } finally {
    await scripted.server.close();
  }
});
