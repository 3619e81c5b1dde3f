import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tool } from './tools.js';

/**
 * A real single-member etcd (Debian's etcd-server, unpacked by scripts/tools.sh) with its own data directory
 * and ports, on loopback or inside a test's network namespace. stop() ends it (and deletes its data unless
 * `keep`); restart() starts it again on the same data and ports. Every wait is bounded.
 */
export interface EtcdServer {
  /** The client URL, e.g. http://127.0.0.1:23791. */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly pid: number | undefined;
  /** Stops the member (SIGTERM, then SIGKILL); the data stays for restart() until destroy(). */
  stop(): Promise<void>;
  /** Starts it again on the same data and ports. */
  restart(): Promise<void>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
  /** What etcd printed (for failure messages). */
  output(): string;
}

export interface EtcdOptions {
  /** Run inside this network namespace (ip netns exec). */
  netns?: string;
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  clientPort?: number;
  peerPort?: number;
  /** Extra etcd flags (e.g. --auth-token-ttl=1). */
  args?: string[];
  /**
   * Serve clients over TLS with this certificate and key; with `clientCa`, require client certificates signed by
   * it. `client` is what the health check presents (PEM buffers). The endpoint is then https://.
   */
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer; ca: Buffer; client?: { cert: Buffer; key: Buffer } };
}

export async function startEtcd(o: EtcdOptions = {}): Promise<EtcdServer> {
  const binary = tool('ETCD');
  const host = o.host ?? '127.0.0.1';
  const clientPort = o.clientPort ?? (o.netns ? 2379 : await freePort());
  const peerPort = o.peerPort ?? (o.netns ? 2380 : await freePort());
  const dataDir = mkdtempSync(join(tmpdir(), 'colo-etcd-'));
  const endpoint = `${o.tls ? 'https' : 'http'}://${host}:${clientPort}`;
  const tlsArgs: string[] = [];
  if (o.tls) {
    // The member reads its certificate from files: they live in its data directory's parent, gone with it.
    const files = mkdtempSync(join(tmpdir(), 'colo-etcd-tls-'));
    writeFileSync(join(files, 'server.crt'), o.tls.cert);
    writeFileSync(join(files, 'server.key'), o.tls.key, { mode: 0o600 });
    tlsArgs.push('--cert-file', join(files, 'server.crt'), '--key-file', join(files, 'server.key'));
    if (o.tls.clientCa) {
      writeFileSync(join(files, 'client-ca.crt'), o.tls.clientCa);
      tlsArgs.push('--client-cert-auth', '--trusted-ca-file', join(files, 'client-ca.crt'));
    }
  }
  const peer = `http://${host}:${peerPort}`;
  const args = [
    '--name', 'colo-test', '--data-dir', dataDir,
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `colo-test=${peer}`, '--initial-cluster-state', 'new',
    '--logger', 'zap', '--log-level', 'error',
    ...tlsArgs,
    ...(o.args ?? []),
  ];
  let child: ChildProcess | undefined;
  let out = '';
  const launch = async () => {
    const [cmd, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, binary, ...args]] : [binary, args];
    const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' } });
    child = c;
    c.stdout!.on('data', (d) => (out += d));
    c.stderr!.on('data', (d) => (out += d));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`etcd exited (${c.exitCode ?? c.signalCode}) before answering:\n${out.slice(-4000)}`);
      if (await healthy(endpoint, o.netns, o.tls)) return;
      if (Date.now() > deadline) {
        c.kill('SIGKILL');
        throw new Error(`etcd at ${endpoint} not healthy within 30 s:\n${out.slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await launch();
  } catch (e) {
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    endpoint,
    dataDir,
    get pid() {
      return child?.pid;
    },
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
    destroy: async () => {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
    output: () => out,
  };
}

/** etcd's /health answers {"health":"true"} once the member serves. */
async function healthy(endpoint: string, netns: string | undefined, tls: EtcdOptions['tls']): Promise<boolean> {
  if (tls) {
    return new Promise((resolve) => {
      const req = httpsRequest(`${endpoint}/health`, { ca: tls.ca, cert: tls.client?.cert, key: tls.client?.key, timeout: 1000 }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body.includes('"health":"true"')));
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }
  if (netns) {
    // The test process lives in the root namespace: ask from inside the member's namespace.
    return new Promise((resolve) => {
      const c = spawn('ip', ['netns', 'exec', netns, 'curl', '-s', '--max-time', '1', `${endpoint}/health`], { stdio: ['ignore', 'pipe', 'ignore'] });
      let body = '';
      c.stdout.on('data', (d) => (body += d));
      c.on('exit', () => resolve(body.includes('"health":"true"')));
      c.on('error', () => resolve(false));
    });
  }
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    return (await res.text()).includes('"health":"true"');
  } catch {
    return false;
  }
}

/** A port nobody listens on now (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
