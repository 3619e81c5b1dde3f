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
 * The node's root logger: JSON lines, one `node` binding; components take child loggers carrying role, epoch
 * and component. The destination is synchronous by default so the last transitions before a crash are on disk.
 */
export function createLogger(opts: { nodeId: string; level?: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { node: opts.nodeId },
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
