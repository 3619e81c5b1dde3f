import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { LinkError, LinkErrorCode } from './errors.js';
import { FramedSocket } from './framed-socket.js';
import { HandshakeReader } from './handshake-reader.js';
import { listenerHandshake } from './handshake.js';
import type { HeartbeatOptions } from './heartbeat.js';
import type { Hello, LinkRefusal } from './hello.js';
import {
  checkHeartbeat,
  checkPositive,
  checkSecurity,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_PAYLOAD,
  loggerOr,
} from './options.js';
import type { LinkSecurity, PeerLink } from './peer-link.js';
import { asLinkError, refuse } from './refuse.js';
import { DEFAULT_HIGH_WATER_MARK, WsPeerLink } from './ws-link.js';
import { childLogger } from '../observability/logger.js';

export interface PeerServer {
  readonly url: string;
  readonly port: number;
  /** Stops accepting, closes every link it accepted and drops handshakes in progress. */
  close(): Promise<void>;
}

export interface ListenOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  security: LinkSecurity;
  heartbeat: HeartbeatOptions;
  /** Largest frame accepted from a peer (default 16 MiB); bigger ends the link with LINK_PROTOCOL. */
  maxPayload?: number;
  /** Called with the peer's hello: answer with ours, or refuse. */
  hello: (peer: Hello) => Hello | LinkRefusal;
  onLink: (link: PeerLink) => void;
  /** Called for every peer turned away (TLS, authentication, version, hello refusal, deadline). */
  onRefused?: (error: LinkError, remoteAddress: string) => void;
  /** Deadline of each handshake phase (default 5000 ms). */
  handshakeTimeoutMs?: number;
  /** send() waits while more than this is queued (default 8 MiB). */
  highWaterMark?: number;
  logger?: Logger;
}

/**
 * Handshakes in progress at once; more are turned away with 503. An unauthenticated peer can make ws buffer
 * up to maxPayload before it is refused, so this bounds what a flood of strangers costs (16 x 16 MiB).
 */
const MAX_PENDING_HANDSHAKES = 16;

/**
 * Listens for peers (the primary listens, the secondary dials). Authentication runs on the upgraded socket
 * before the link exists: the 'upgrade' handler hands the socket to ws (handleUpgrade) and starts the
 * challenge at once.
 */
export async function listenForPeers(opts: ListenOptions): Promise<PeerServer> {
  checkSecurity(opts.security, 'listener');
  const heartbeat = checkHeartbeat(opts.heartbeat);
  const maxPayload = checkPositive('maxPayload', opts.maxPayload, DEFAULT_MAX_PAYLOAD);
  const handshakeTimeoutMs = checkPositive('handshakeTimeoutMs', opts.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS);
  const highWaterMark = checkPositive('highWaterMark', opts.highWaterMark, DEFAULT_HIGH_WATER_MARK);
  const log = childLogger(loggerOr(opts.logger), { component: 'transport-listener' });
  const tls = opts.security.tls;

  const refused = (error: LinkError, remoteAddress: string) => {
    log.warn({ code: error.code, remote: remoteAddress }, `peer refused: ${error.message}`);
    try {
      opts.onRefused?.(error, remoteAddress);
    } catch (e) {
      log.error({ err: (e as Error).message }, 'onRefused callback threw');
    }
  };

  const server: Server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true })
    : createHttpServer();
  const wss = new WebSocketServer({ noServer: true, maxPayload, perMessageDeflate: false, clientTracking: false });
  wss.on('error', (err) => log.error({ err: err.message }, 'ws server error'));
  server.on('error', (err) => log.error({ err: err.message }, 'listener error'));
  server.on('clientError', (err: Error, socket: Duplex) => {
    log.warn({ err: err.message }, 'malformed request from a peer');
    socket.destroy();
  });
  server.on('tlsClientError', (err: Error, socket: Socket) => {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    refused(
      new LinkError(
        LinkErrorCode.TLS_FAILED,
        `TLS with the peer failed (${err.message}); its certificate must be signed by our CA`,
        { cause: err },
      ),
      remote,
    );
  });
  // Plain HTTP requests are not peers.
  server.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end('colo peer link: WebSocket only\n');
  });

  const pending = new Set<WebSocket>();
  const links = new Set<WsPeerLink>();
  let closing = false;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', (err) => log.warn({ err: err.message }, 'socket error before upgrade'));
    const remoteAddress = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    if (closing || pending.size >= MAX_PENDING_HANDSHAKES) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n');
      return;
    }
    // ws answers the upgrade on the FramedSocket, which reads and writes the frames (see FramedSocket).
    const framed = new FramedSocket(socket as Socket, { side: 'server', maxPayload, head });
    wss.handleUpgrade(req, framed, Buffer.alloc(0), (ws) => {
      pending.add(ws);
      const reader = new HandshakeReader(ws, framed);
      listenerHandshake(ws, reader, { psk: opts.security.psk, timeoutMs: handshakeTimeoutMs, hello: opts.hello }).then(
        (result) => {
          pending.delete(ws);
          if (closing) {
            ws.terminate();
            return;
          }
          const link = new WsPeerLink(ws, framed, result, { heartbeat, highWaterMark, logger: log, remoteAddress });
          links.add(link);
          link.onClose(() => links.delete(link));
          try {
            opts.onLink(link);
          } catch (e) {
            log.error({ err: (e as Error).message }, 'onLink callback threw; closing the link');
            link.close('the listener could not take the link');
          }
        },
        (e: unknown) => {
          pending.delete(ws);
          const error = asLinkError(e);
          refuse(ws, reader, error);
          refused(error, remoteAddress);
        },
      );
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new LinkError(LinkErrorCode.SOCKET_ERROR, `cannot listen on ${opts.host}:${opts.port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `${tls ? 'wss' : 'ws'}://${host}:${port}`;
  log.info({ url, psk: opts.security.psk !== undefined, mtls: tls !== undefined }, 'listening for peers');

  return {
    url,
    port,
    async close() {
      if (closing) return;
      closing = true;
      for (const ws of pending) ws.terminate();
      pending.clear();
      const ended = [...links].map((link) => {
        const socket = link.rawSocket;
        link.close('the listener is shutting down');
        return closedWithin(socket, 1000);
      });
      await Promise.all(ended);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Waits for a socket's close handshake, destroying it if the peer does not answer in time. */
function closedWithin(ws: WebSocket, ms: number): Promise<void> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => ws.terminate(), ms);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
