/**
 * One `colo` subcommand. Each lives in its own module under commands/ and is loaded lazily by bin.ts, so a
 * command's dependencies (ws, prom-client, ...) cost nothing to the others.
 */
export interface Command {
  /** Words after `colo`, e.g. ['stream', 'inspect']. */
  readonly path: readonly string[];
  /** One line for `colo --help`. */
  readonly summary: string;
  /** Full text for `colo <path> --help`: usage, options with defaults, exit codes. */
  readonly help: string;
  /** Runs the command with the arguments after its path; resolves to the process exit code. */
  run(argv: string[], io: CommandIo): Promise<number>;
}

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
}

/** Exit codes shared by every command (docs/cli.md). Commands may add their own from 10 up. */
export const ExitCode = {
  OK: 0,
  /** The command ran and found a failure (invalid stream, failed drill, unhealthy node). */
  FAILED: 1,
  /** Bad usage: unknown command or option, missing argument, invalid config. */
  USAGE: 2,
  /** An input/output problem: file not found, connection refused. */
  IO: 3,
  /** An unexpected internal error (a bug: please report it). */
  INTERNAL: 70,
} as const;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}
