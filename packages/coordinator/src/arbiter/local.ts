import { chmodSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type IncomingMessage, type Server } from 'node:http';
import { NODE_DEFAULTS } from '../defaults.js';
import type { Arbiter, EpochExpectation, EpochRecord, SwapResult } from './arbiter.js';
import { ArbiterError, ArbiterErrorCode } from './errors.js';
import { MemoryArbiter } from './none.js';
import { parseRecord } from './record.js';

/**
 * The `local` arbiter, for a pair on one host: the record lives in one process that both nodes reach over a
 * unix socket (`colo pair`'s supervisor holds it). It is as safe as etcd against freezes, crashes of either
 * node and their links, and is no help at all across hosts: the socket exists on one host only.
 */

const MAX_BODY = 4096;

export interface LocalArbiterServer {
  readonly path: string;
  readonly store: MemoryArbiter;
  close(): Promise<void>;
}

/** Serves `store` on a unix socket at `path` (mode 0600: only this user's processes can decide for the pair). */
export async function startLocalArbiterServer(path: string, store = new MemoryArbiter()): Promise<LocalArbiterServer> {
  rmSync(path, { force: true });
  const server: Server = createServer((req, res) => {
    const answer = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/record') return answer(200, { record: store.peek() });
    if (req.method !== 'POST' || req.url !== '/swap') return answer(404, { error: 'GET /record or POST /swap' });
    readBody(req)
      .then((text) => {
        const body = JSON.parse(text) as { expect?: unknown; next?: unknown };
        const expect = parseExpectation(body.expect);
        const next = parseRecord(body.next, 'next');
        if (next === null) throw new Error('next: a record is required');
        answer(200, store.swap(expect, next));
      })
      .catch((e: Error) => answer(400, { error: e.message }));
  });
  // Nodes read the record every few seconds (Arbitration's check): their connections stay open between reads,
  // so a decision on the failover path does not wait for a new one.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return {
    path,
    store,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      text += c;
      if (text.length > MAX_BODY) {
        reject(new Error('request too large'));
        req.destroy();
      }
    });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

function parseExpectation(v: unknown): EpochExpectation {
  if (v === null) return null;
  const o = v as { epoch?: unknown; holder?: unknown };
  if (typeof o !== 'object' || !Number.isSafeInteger(o.epoch) || (o.epoch as number) < 0) throw new Error('expect: {epoch, holder?} or null');
  if (o.holder !== undefined && typeof o.holder !== 'string') throw new Error('expect.holder: a string');
  return o.holder === undefined ? { epoch: o.epoch as number } : { epoch: o.epoch as number, holder: o.holder as string };
}

export interface LocalArbiterOptions {
  /** The supervisor's socket. */
  socketPath: string;
  /** Longest wait for one answer; past it the request counts as unreachable and the node asks again. Default 2 s. */
  timeoutMs?: number;
}

/** A node's client of the local arbiter. */
export class LocalArbiter implements Arbiter {
  readonly kind = 'local';
  readonly where: string;
  private readonly timeoutMs: number;
  private closed = false;
  private readonly options: LocalArbiterOptions;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 4 });

  constructor(options: LocalArbiterOptions) {
    this.options = options;
    if (!options.socketPath) throw new ArbiterError(ArbiterErrorCode.BAD_CONFIG, 'the local arbiter needs the path of its socket');
    this.where = `unix:${options.socketPath}`;
    this.timeoutMs = options.timeoutMs ?? NODE_DEFAULTS.arbiter.timeoutMs;
  }

  async read(): Promise<EpochRecord | null> {
    const body = (await this.call('GET', '/record')) as { record?: unknown };
    return parseRecord(body.record ?? null, 'record');
  }

  async compareAndSwap(expect: EpochExpectation, next: EpochRecord): Promise<SwapResult> {
    const body = (await this.call('POST', '/swap', JSON.stringify({ expect, next }))) as { swapped?: unknown; current?: unknown };
    if (typeof body.swapped !== 'boolean') throw new ArbiterError(ArbiterErrorCode.CORRUPT_RECORD, 'the local arbiter answered without a result');
    return { swapped: body.swapped, current: parseRecord(body.current ?? null, 'current') };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.agent.destroy();
  }

  private call(method: string, path: string, body?: string): Promise<unknown> {
    if (this.closed) return Promise.reject(new ArbiterError(ArbiterErrorCode.CLOSED, 'the arbiter client was closed'));
    return new Promise((resolve, reject) => {
      const unreachable = (why: string, cause?: unknown) =>
        reject(new ArbiterError(ArbiterErrorCode.UNREACHABLE, `the local arbiter at ${this.options.socketPath} did not answer: ${why}`, { cause }));
      const req = request({ socketPath: this.options.socketPath, agent: this.agent, method, path, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          // An answer never needs more: a larger one is not the local arbiter's, and is not buffered.
          if (text.length + c.length > MAX_BODY) {
            clearTimeout(timer);
            req.destroy();
            reject(new ArbiterError(ArbiterErrorCode.CORRUPT_RECORD, `the local arbiter answered more than ${MAX_BODY} bytes`));
            return;
          }
          text += c;
        });
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode !== 200) return reject(new ArbiterError(ArbiterErrorCode.CORRUPT_RECORD, `the local arbiter answered ${res.statusCode}: ${text}`));
          try {
            resolve(JSON.parse(text));
          } catch (e) {
            reject(new ArbiterError(ArbiterErrorCode.CORRUPT_RECORD, 'the local arbiter answered something that is not JSON', { cause: e }));
          }
        });
        res.on('error', (e) => unreachable(e.message, e));
      });
      const timer = setTimeout(() => {
        req.destroy();
        unreachable(`no answer within ${this.timeoutMs} ms`);
      }, this.timeoutMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        unreachable(e.message, e);
      });
      req.end(body);
    });
  }
}
