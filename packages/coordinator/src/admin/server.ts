import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

/** What the admin API needs from a node; ColoNode provides it. */
export interface AdminTarget {
  /** JSON for GET /status. */
  status(): unknown;
  /** GET /readyz: true when the node does its job (a primary serving, or a synchronised secondary). */
  ready(): boolean;
  /** GET /primary: true only on the primary serving clients now (for a load balancer's health check). */
  serving(): boolean;
  /** GET /metrics: Prometheus text exposition and its content type. */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** POST /checkpoint: a manual checkpoint; resolves with its summary when it completes. */
  checkpoint(): Promise<unknown>;
  /** POST /failover: a secondary promotes itself; a primary steps down so its secondary takes over. */
  failover(): Promise<unknown>;
  /** POST /crash (drills): the node dies at once, as if its host lost power. Never returns. */
  crash(): void;
}

export interface AdminServer {
  readonly url: string;
  close(): Promise<void>;
}

const MUTATING = new Set(['/checkpoint', '/failover', '/crash']);

function sha(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time comparison of a presented bearer token with the configured one. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  return timingSafeEqual(sha(m[1]!), sha(token));
}

function send(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body, null, 2) + '\n';
  res.writeHead(code, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', ...headers });
  res.end(text);
}

/**
 * The node's admin HTTP API. Reads are open (bind it to a management network); every mutating endpoint needs
 * `Authorization: Bearer <admin token>`: without it 401, and nothing happens. With no token configured the
 * mutating endpoints are disabled (403), never open.
 */
export async function startAdminServer(opts: {
  host: string;
  port: number;
  token: string | undefined;
  /** POST /crash kills the node (drills): off unless the node's settings enable it (admin.allow_crash). */
  allowCrash?: boolean;
  /** HTTPS with this certificate and key (admin.tls_cert, admin.tls_key); plain HTTP without. */
  tls?: { cert: Buffer; key: Buffer };
  target: AdminTarget;
  logger: Logger;
}): Promise<AdminServer> {
  const log = opts.logger.child({ component: 'admin' });
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res).catch((e: unknown) => {
      log.error({ err: e, path: req.url }, 'admin request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal', message: e instanceof Error ? e.message : String(e) });
    });
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : createServer(onRequest);
  server.on('clientError', (_e, socket) => socket.destroy());

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://admin').pathname;
    req.resume(); // no endpoint takes a body; drain whatever came
    if (MUTATING.has(path)) {
      if (req.method !== 'POST') return send(res, 405, { error: 'method_not_allowed', message: `use POST ${path}` }, { allow: 'POST' });
      if (opts.token === undefined) {
        log.warn({ path, remote: req.socket.remoteAddress }, 'mutating admin request refused: no admin token configured');
        return send(res, 403, { error: 'admin_token_not_configured', message: 'set admin.token_file (or COLO_ADMIN_TOKEN) to enable this endpoint' });
      }
      if (!tokenMatches(req.headers.authorization, opts.token)) {
        log.warn({ path, remote: req.socket.remoteAddress }, 'mutating admin request refused: missing or wrong bearer token');
        return send(res, 401, { error: 'unauthorized', message: 'send Authorization: Bearer <admin token>' }, { 'www-authenticate': 'Bearer realm="colo"' });
      }
      log.info({ path, remote: req.socket.remoteAddress }, 'admin request');
      try {
        if (path === '/checkpoint') return send(res, 200, { ok: true, checkpoint: await opts.target.checkpoint() });
        if (path === '/failover') return send(res, 200, { ok: true, result: await opts.target.failover() });
      } catch (e) {
        // A request the node cannot honour now (no secondary to checkpoint to, not synchronised): a conflict
        // with its state, not a server fault.
        const code = (e as { code?: unknown }).code;
        if (typeof code === 'string') {
          log.warn({ path, code, message: (e as Error).message }, 'admin request refused by the node');
          return send(res, 409, { ok: false, error: code, message: (e as Error).message });
        }
        throw e;
      }
      if (!opts.allowCrash) {
        log.warn({ path, remote: req.socket.remoteAddress }, 'crash request refused: admin.allow_crash is off');
        return send(res, 403, { error: 'crash_disabled', message: 'POST /crash kills this node; it is for drills: set admin.allow_crash (colo pair does) to enable it' });
      }
      send(res, 202, { ok: true, message: 'crashing now' });
      res.on('finish', () => opts.target.crash());
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method_not_allowed' }, { allow: 'GET' });
    switch (path) {
      case '/metrics': {
        const m = await opts.target.metrics();
        res.writeHead(200, { 'content-type': m.contentType });
        return void res.end(m.body);
      }
      case '/status':
        return send(res, 200, opts.target.status());
      case '/healthz':
        return send(res, 200, 'ok\n');
      case '/readyz':
        return opts.target.ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
      case '/primary':
        // 200 on one node of a pair at most: where a load balancer (or keepalived's check) sends clients.
        return opts.target.serving() ? send(res, 200, 'primary\n') : send(res, 503, 'not primary\n');
      default:
        return send(res, 404, { error: 'not_found', endpoints: ['GET /metrics', 'GET /status', 'GET /healthz', 'GET /readyz', 'GET /primary', 'POST /checkpoint', 'POST /failover', 'POST /crash'] });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => log.error({ err: e }, 'admin server error'));
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
