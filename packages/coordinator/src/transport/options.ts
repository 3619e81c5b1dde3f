import { pino, type Logger } from 'pino';
import { NODE_DEFAULTS } from '../defaults.js';
import { LinkError, LinkErrorCode } from './errors.js';
import { DEFAULT_HEARTBEAT, type HeartbeatOptions } from './heartbeat.js';
import type { LinkSecurity } from './peer-link.js';
import { MIN_PSK_BYTES } from './psk.js';

/** ws refuses messages above this by default; a frame is at most 1 MiB of stream bytes, so 16 MiB is generous. */
export const DEFAULT_MAX_PAYLOAD = NODE_DEFAULTS.replication.maxFrameBytes;
/** Each handshake phase (authentication, hello) must finish within this, or the peer is dropped. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;
/** connectToPeer gives up after this (TCP + TLS + handshake). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

const silent = pino({ level: 'silent' });

export function loggerOr(logger: Logger | undefined): Logger {
  return logger ?? silent;
}

export function checkSecurity(security: LinkSecurity, side: 'listener' | 'dialer'): void {
  if (security.psk !== undefined && security.psk.length < MIN_PSK_BYTES) {
    throw new LinkError(
      LinkErrorCode.CONFIG,
      `the pre-shared key is ${security.psk.length} bytes; use at least ${MIN_PSK_BYTES} random bytes (e.g. openssl rand 32)`,
    );
  }
  if (side === 'listener' && security.psk === undefined && security.tls === undefined) {
    throw new LinkError(
      LinkErrorCode.CONFIG,
      'a listener needs a pre-shared key or mutual TLS; refusing to accept unauthenticated peers',
    );
  }
}

export function checkHeartbeat(heartbeat: HeartbeatOptions | undefined): HeartbeatOptions {
  const hb = heartbeat ?? DEFAULT_HEARTBEAT;
  const ok = (n: number) => Number.isFinite(n) && n > 0;
  if (!ok(hb.intervalMs) || !ok(hb.timeoutMs) || hb.timeoutMs < hb.intervalMs) {
    throw new LinkError(
      LinkErrorCode.CONFIG,
      `heartbeat interval ${hb.intervalMs} ms / timeout ${hb.timeoutMs} ms: both must be positive and the timeout at least the interval`,
    );
  }
  return hb;
}

export function checkPositive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0) {
    throw new LinkError(LinkErrorCode.CONFIG, `${name} must be a positive number, got ${String(value)}`);
  }
  return v;
}
