import { ExitCode, UsageError, type CommandIo } from './command.js';
import { commands } from './registry.js';

import { VERSION } from './version.js';

function usage(): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length));
  const lines = commands.map((c) => `  colo ${c.path.join(' ').padEnd(width)}  ${c.summary}`);
  return [
    'Usage: colo <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `colo <command> --help` (or `colo help <command>`) for a command\'s options; `colo --version`.',
    'Exit codes: 0 ok, 1 the command found a failure, 2 bad usage or config, 3 I/O error (a file, a connection,',
    'an address in use), 70 internal error (a bug: please report it). A command may add its own (its --help).',
  ].join('\n');
}

/** Finds the longest registered command path that prefixes argv. */
function resolve(argv: string[]) {
  let best: (typeof commands)[number] | undefined;
  for (const c of commands) {
    if (c.path.every((w, i) => argv[i] === w) && (!best || c.path.length > best.path.length)) best = c;
  }
  return best;
}

export async function main(argv: string[], io: CommandIo): Promise<number> {
  // `colo help CMD ...`: that command's help.
  if (argv[0] === 'help' && argv.length > 1) return main([...argv.slice(1), '--help'], io);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.stdout.write(usage() + '\n');
    return argv.length === 0 ? ExitCode.USAGE : ExitCode.OK;
  }
  if (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version') {
    io.stdout.write(`colo ${VERSION}\n`);
    return ExitCode.OK;
  }
  const entry = resolve(argv);
  if (!entry) {
    const group = commands.filter((c) => c.path[0] === argv[0]);
    if (group.length > 0) {
      io.stderr.write(`colo ${argv[0]}: expected one of: ${group.map((c) => c.path.slice(1).join(' ')).join(', ')}\n`);
    } else {
      io.stderr.write(`colo: unknown command '${argv[0]}'\n\n${usage()}\n`);
    }
    return ExitCode.USAGE;
  }
  const command = await entry.load();
  const rest = argv.slice(entry.path.length);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(command.help.trimEnd() + '\n');
    return ExitCode.OK;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`colo ${entry.path.join(' ')}: ${e.message}\nRun 'colo ${entry.path.join(' ')} --help' for usage.\n`);
      return ExitCode.USAGE;
    }
    io.stderr.write(`colo ${entry.path.join(' ')}: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return ExitCode.INTERNAL;
  }
}
