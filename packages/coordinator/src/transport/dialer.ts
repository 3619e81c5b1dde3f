import type { IncomingMessage } from 'node:http';
import { connect as netConnect, isIP, type NetConnectOpts, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocket, type ClientOptions } from 'ws';
import { LinkError, LinkErrorCode } from './errors.js';
import { HandshakeReader } from './handshake-reader.js';
import { dialerHandshake } from './handshake.js';
import type { HeartbeatOptions } from './heartbeat.js';
import type { Hello } from './hello.js';
import {
  checkHeartbeat,
  checkPositive,
  checkSecurity,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_PAYLOAD,
  loggerOr,
} from './options.js';
import type { LinkSecurity, PeerLink } from './peer-link.js';
import { asLinkError, refuse } from './refuse.js';
import { DEFAULT_HIGH_WATER_MARK, WsPeerLink } from './ws-link.js';
import { childLogger } from '../observability/logger.js';
import { connectWithReadRing, ReadRing } from './read-ring.js';
import { FramedSocket } from './framed-socket.js';

export interface ConnectOptions {
  /** ws://host:port or wss://host:port (wss with security.tls for mutual TLS). */
  url: string;
  security: LinkSecurity;
  heartbeat: HeartbeatOptions;
  /** Largest frame accepted from the peer (default 16 MiB). */
  maxPayload?: number;
  hello: Hello;
  /** TCP + TLS + authentication + hello must be done within this (default 10000 ms). */
  timeoutMs?: number;
  /** send() waits while more than this is queued (default 8 MiB). */
  highWaterMark?: number;
  logger?: Logger;
  /**
   * Read the socket into memory reused from one read to the next (ReadRing) rather than a fresh buffer per
   * read; for a link whose data listener passes DataListenerOptions (the secondary's replication stream).
   * Plain ws:// only (TLS sockets read through Node's own buffers). Default false.
   */
  reuseReadMemory?: boolean;
}

/**
 * Dials a listening peer (the secondary dials the primary) and resolves with an authenticated link once the
 * hellos are exchanged. Rejects with a LinkError: LINK_AUTH_FAILED / LINK_AUTH_MISSING / LINK_TLS_FAILED,
 * LINK_REFUSED or LINK_VERSION_MISMATCH (the listener said no), LINK_CONNECT_TIMEOUT, LINK_SOCKET_ERROR.
 */
export async function connectToPeer(opts: ConnectOptions): Promise<PeerLink> {
  checkSecurity(opts.security, 'dialer');
  const heartbeat = checkHeartbeat(opts.heartbeat);
  const maxPayload = checkPositive('maxPayload', opts.maxPayload, DEFAULT_MAX_PAYLOAD);
  const timeoutMs = checkPositive('timeoutMs', opts.timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
  const highWaterMark = checkPositive('highWaterMark', opts.highWaterMark, DEFAULT_HIGH_WATER_MARK);
  const log = childLogger(loggerOr(opts.logger), { component: 'transport-dialer', url: opts.url });

  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new LinkError(LinkErrorCode.CONFIG, `'${opts.url}' is not a URL; expected ws://host:port or wss://host:port`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new LinkError(LinkErrorCode.CONFIG, `'${opts.url}' is not a ws:// or wss:// URL`);
  }
  const tls = opts.security.tls;
  if (tls && url.protocol !== 'wss:') {
    throw new LinkError(LinkErrorCode.CONFIG, `mutual TLS is configured but '${opts.url}' is not a wss:// URL`);
  }

  const deadline = Date.now() + timeoutMs;
  // With TLS 1.3 the listener checks our certificate after our side of the TLS handshake is done, and an
  // unknown CA makes it hang up without an alert: the client sees only "socket hang up". Watching the TLS
  // socket lets us say what that hang-up means.
  let tlsDone = false;
  let upgraded = false;
  // ws hands its connector the http(s) request options; @types/ws types it as net's createConnection.
  const connectTls = (options: ConnectionOptions & { host?: string; path?: string }): TLSSocket => {
    // As ws's own connector does: no path for TLS (the request's path is not a socket's), SNI only for host names.
    options.path = undefined;
    if (!options.servername && options.servername !== '') {
      options.servername = isIP(options.host ?? '') ? '' : options.host;
    }
    const socket = tlsConnect(options);
    socket.once('secureConnect', () => {
      tlsDone = true;
    });
    return socket;
  };
  const readRing = opts.reuseReadMemory && url.protocol === 'ws:' ? new ReadRing() : undefined;
  const connectTcp = (options: NetConnectOpts & { path?: string; socketPath?: string }): Socket => {
    options.path = options.socketPath;
    return readRing ? connectWithReadRing(options, readRing) : netConnect(options);
  };
  // ws runs the upgrade over the FramedSocket, which reads and writes the frames (see FramedSocket).
  let framed: FramedSocket | undefined;
  const connectFramed = (options: ConnectionOptions & NetConnectOpts & { path?: string; socketPath?: string }): FramedSocket => {
    const socket = url.protocol === 'wss:' ? connectTls(options) : connectTcp(options);
    framed = new FramedSocket(socket, { side: 'client', maxPayload, ...(readRing ? { readRing } : {}) });
    return framed;
  };
  const wsOptions: ClientOptions = {
    perMessageDeflate: false,
    maxPayload,
    // Our own deadline (dialerHandshake) names the timeout LINK_CONNECT_TIMEOUT; ws's timer is only a backstop,
    // later, so that under load the two never race and the same hang gets a different code.
    handshakeTimeout: timeoutMs + 1000,
    followRedirects: false,
    // A zero masking key, which ws recognises and then skips the XOR on both ends. RFC 6455 masks client frames
    // so that bytes a script chooses cannot pose as HTTP to a transparent proxy's cache; here both ends are
    // colo nodes that authenticated each other, no HTTP intermediary takes part (wss hides the bytes anyway),
    // and masking in JavaScript cut this direction to a tenth of the other (docs/transport.md, Throughput).
    generateMask: zeroMask,
    ...(tls ? { cert: tls.cert, key: tls.key, ca: tls.ca } : {}),
    createConnection: connectFramed as unknown as ClientOptions['createConnection'],
  };
  const ws = new WebSocket(opts.url, wsOptions);
  // ws creates its request, and so the socket, before its constructor returns.
  if (!framed) throw new LinkError(LinkErrorCode.CONFIG, 'ws did not dial through the given connector');
  let remoteAddress = url.host;
  ws.on('upgrade', (res: IncomingMessage) => {
    upgraded = true;
    remoteAddress = `${res.socket.remoteAddress}:${res.socket.remotePort}`;
  });
  const reader = new HandshakeReader(ws, framed);
  reader.reclassify = (error) =>
    tlsDone && !upgraded && error.code === LinkErrorCode.SOCKET_ERROR
      ? new LinkError(
          LinkErrorCode.TLS_FAILED,
          'the listener hung up right after the TLS handshake: it refused our client certificate (not signed by the CA it trusts, or missing)',
          { cause: error },
        )
      : error;
  try {
    const result = await dialerHandshake(ws, reader, {
      psk: opts.security.psk,
      tlsVerifiedListener: tls !== undefined,
      hello: opts.hello,
      deadline,
    });
    return new WsPeerLink(ws, framed, result, { heartbeat, highWaterMark, logger: loggerOr(opts.logger), remoteAddress, ...(readRing ? { readRing } : {}) });
  } catch (e) {
    const error = asLinkError(e);
    refuse(ws, reader, error);
    log.warn({ code: error.code, remote: remoteAddress }, `link to the peer not established: ${error.message}`);
    throw error;
  }
}

function zeroMask(mask: Buffer): void {
  mask.fill(0);
}
