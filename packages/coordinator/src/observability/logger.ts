import { hostname } from 'node:os';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths pino replaces with "[redacted]" wherever they appear in a log line's bindings or object: keys, tokens,
 * and request headers carrying them. Secrets must never reach a log file.
 */
export const REDACTED_PATHS = [
  'psk', '*.psk', 'key', '*.key', 'token', '*.token', 'secret', '*.secret', 'password', '*.password',
  'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization', 'tls.key', '*.tls.key',
];

/**
 * The node's root logger: JSON lines, bound to the node id, the process id and the host name; components take
 * child loggers carrying role, epoch and component. The destination is synchronous by default so the last transitions before a crash are on disk.
 */
export function createLogger(opts: { nodeId: string; level?: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      // pid and hostname: which process of which host wrote a line, once logs of several are gathered.
      base: { node: opts.nodeId, pid: process.pid, hostname: hostname() },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A logger that writes nothing (library defaults, tests that do not read logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * A child logger carrying only the `bindings` its parent does not carry yet. pino appends a child's bindings to
 * its parent's, so a key bound twice (a node id, a component, a channel set by the caller and again by the
 * callee) printed twice in one JSON line. The caller's binding wins: it knows the more specific context.
 */
export function childLogger(parent: Logger, bindings: Record<string, unknown>): Logger {
  const bound = parent.bindings();
  const fresh: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(bindings)) if (!(k in bound)) fresh[k] = v;
  return parent.child(fresh);
}
