import type { Domain } from '@colo/domain';
import { createLogger, CoordinatorErrorCode, decideStartRole, ProtectedNode, type Arbiter, type Logger, type NodeRole, type StartDecision } from '@colo/coordinator';
import { arbiterFor } from './arbiter.js';
import { ExitCode, type CommandIo } from '../command.js';
import { ConfigError, loadConfig, redactedConfig, requireForRole, settingArgs, type NodeConfig } from '../config/load.js';
import { VERSION } from '../version.js';
import { flagName, SETTINGS } from '../config/schema.js';
import { hasNodeHeapFlags, NODE_HEAP_FLAGS } from '../runtime/node-flags.js';
import { preallocateGuestMemory } from './preallocated.js';
import { primaryGuest, standbyGuest } from './guests.js';
import { nodeOptions } from './node-options.js';

export const NODE_HELP_OPTIONS = `Options:
  --config FILE       YAML configuration (docs/configuration.md); flags and COLO_* environment variables override it
  --<section>-<key> V any setting as a flag, e.g. --replication-peer ws://host-a:7800, --heartbeat-timeout 2s,
                      --guest-memory 1GiB, --service-listen 0.0.0.0:6379, --log-level debug
  --blackhole         Remus primary: checkpoint into nothing (remus.blackhole): measures what protection costs,
                      protects nothing
  --print-config      print the merged configuration (secrets redacted) and exit

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 the node stopped acting (a secondary that lost its primary before
its first checkpoint, a primary fenced by a newer epoch, either node losing the arbiter's decision: start it
again as a secondary; a promoted node that could not open its client service), 2 invalid configuration or
usage, 3 at start: a listen address in use (a secondary's service.listen included), the primary unreachable,
a file missing (guest.image) or the guest memory unavailable (guest.prealloc), 10 refused: as primary by the
arbiter (a stale former primary: the pair's epoch belongs to the other node; start this one as its secondary),
or, node.role auto, the pair's history needs an operator (COLO_PAIR_HISTORY_LOST: the arbiter lost the record of
a pair this node was in; COLO_STATE_CORRUPT: node.state_dir/state.json does not parse or is another node's).

Settings (each also COLO_SECTION_KEY in the environment, or section.key in the YAML file; docs/configuration.md):
${settingsHelp()}`;

/** Every setting's flag, value and default, from the settings table (so `--help` lists them all, always). */
function settingsHelp(): string {
  const value = (s: (typeof SETTINGS)[number]) => (s.type === 'enum' ? s.values!.join('|') : s.type === 'bool' ? 'true|false' : s.type.toUpperCase());
  return SETTINGS.map((s) => {
    const flag = `  --${flagName(s.path)} ${value(s)}`;
    const def = s.default === undefined ? '' : `default ${s.default}`;
    return `${flag.padEnd(44)} ${def}${s.secret ? `${def ? ', ' : ''}secret` : ''}`.trimEnd();
  }).join('\n');
}

/** `colo node` refused as primary by the arbiter (COLO_ARBITER_REFUSED). */
export const NODE_EXIT_REFUSED = 10;

/** Parses flags + config for `colo node|primary|secondary`, forcing the role when the command names one. */
export function nodeConfig(argv: string[], forcedRole: 'primary' | 'secondary' | undefined, env: NodeJS.ProcessEnv): { config: NodeConfig; print: boolean } {
  // --blackhole: the seed's name for remus.blackhole (Xen's `xl remus -b`).
  const { file, flags, values } = settingArgs(argv, { 'print-config': { type: 'boolean' }, blackhole: { type: 'boolean' } });
  if (forcedRole) flags['node.role'] = forcedRole;
  if (values.blackhole === true) flags['remus.blackhole'] = 'true';
  const config = loadConfig({ file, env, flags });
  requireForRole(config);
  return { config, print: values['print-config'] === true };
}

/** Runs one node until SIGINT/SIGTERM, or until it stops acting. */
export async function runNode(argv: string[], io: CommandIo, forcedRole?: 'primary' | 'secondary'): Promise<number> {
  /** The command as the operator typed it, in every message (`colo primary --bogus` is not "colo node"'s). */
  const name = `colo ${forcedRole ?? 'node'}`;
  let config: NodeConfig;
  let print: boolean;
  try {
    ({ config, print } = nodeConfig(argv, forcedRole, process.env));
  } catch (e) {
    if (e instanceof ConfigError) {
      io.stderr.write(`${name}: invalid configuration: ${e.message} (${e.code})\n`);
      return ExitCode.USAGE;
    }
    throw e;
  }
  if (print) {
    io.stdout.write(JSON.stringify(redactedConfig(config), null, 2) + '\n');
    return ExitCode.OK;
  }
  const logger = createLogger({ nodeId: config.node.id, level: config.log.level });
  const arbiter = arbiterFor(config, logger);
  let role: NodeRole;
  let epoch: number | undefined;
  if (config.node.role === 'auto') {
    const decided = await startRole(config, arbiter, logger, name, io);
    if (typeof decided === 'number') return decided;
    ({ role, epoch } = decided);
  } else {
    role = config.node.role!;
  }
  let guest: Domain | undefined;
  // A guest that is its own process (QEMU) and ends under the node: the node stops, exit 1, so that its peer's
  // arbiter decision takes over (set once `finish` exists below).
  let onGuestLost: (why: string) => void = () => {};
  const guestLost = (why: string) => onGuestLost(why);
  /** guest.prealloc's memory for the guest the synchronisation creates (none without the setting). */
  let takePreallocated: (guestBytes: number) => SharedArrayBuffer | undefined = () => undefined;
  if (role === 'primary') {
    try {
      guest = await primaryGuest(config, guestLost);
    } catch (e) {
      // An operator's mistake (a missing image, a kernel path): the message and its code, no stack trace.
      logger.error({ code: (e as NodeJS.ErrnoException).code, error: (e as Error).message }, 'could not start the guest');
      io.stderr.write(`${name}: could not start the guest: ${(e as Error).message}\n`);
      return ExitCode.IO;
    }
  }
  let node: ProtectedNode;
  try {
    node = new ProtectedNode({
      ...nodeOptions(config, role),
      epoch,
      version: VERSION,
      processMetrics: true,
      domain: guest,
      hostGuest: (identity) => standbyGuest(config, identity?.pageCount, takePreallocated, guestLost),
      arbiter,
      logger,
    });
  } catch (e) {
    // node.state_dir holds a state that is not this node's: the operator's to look at (COLO_STATE_CORRUPT).
    if ((e as { code?: string }).code !== CoordinatorErrorCode.STATE_CORRUPT) throw e;
    logger.error(failure(e), 'could not start');
    io.stderr.write(`${name}: could not start: ${(e as Error).message}\n`);
    guest?.destroy();
    await arbiter.close().catch(() => {});
    return NODE_EXIT_REFUSED;
  }
  logger.info({ config: redactedConfig(config) }, `starting as ${role}`);
  if (config.replication.cleartextOffLoopback) {
    logger.warn('replication.allow_cleartext: the links leave this host without TLS: guest memory and client data cross the network in clear (the pre-shared key authenticates, it does not encrypt)');
  }
  if (config.admin.cleartextOffLoopback) {
    logger.warn('admin.allow_cleartext: the admin API listens off loopback over plain HTTP: its bearer token crosses the network in clear');
  }
  if (!hasNodeHeapFlags()) {
    logger.warn(
      { missing: NODE_HEAP_FLAGS },
      'node runs without its heap flags: expect the collector to pause inside checkpoints (colo pair adds them; see docs/operations.md)',
    );
  }

  // guest.prealloc: the memory the initial synchronisation writes into, committed before the secondary dials.
  if (role === 'secondary' && config.guest.prealloc && !config.guest.qemu) {
    try {
      takePreallocated = await preallocateGuestMemory(config.guest.memoryBytes, logger);
    } catch (e) {
      logger.error(failure(e), 'could not preallocate the guest memory');
      io.stderr.write(`${name}: could not start: ${(e as Error).message}\n`);
      return ExitCode.IO;
    }
  }

  let finish!: (code: number) => void;
  const finished = new Promise<number>((r) => (finish = r));
  onGuestLost = (why) => {
    logger.error({ why }, 'the guest is gone: this node stops so that its peer takes over');
    io.stderr.write(`${name}: the guest is gone: ${why}\n`);
    void node.stop().then(() => finish(ExitCode.FAILED));
  };
  node.onExit((reason, error) => {
    logger.error({ reason, err: error }, `node stopped acting (${reason})`);
    void node.stop().then(() => finish(ExitCode.FAILED));
  });
  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping');
    void node.stop().then(() => finish(ExitCode.OK));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  try {
    await node.start();
  } catch (e) {
    logger.error(failure(e), 'could not start');
    const code = (e as { code?: string }).code;
    // Typed errors end their messages with their code already; others (a file system's) get it added.
    io.stderr.write(`${name}: could not start: ${(e as Error).message}${code && !(e as Error).message.endsWith(`(${code})`) ? ` (${code})` : ''}\n`);
    await node.stop().catch(() => {});
    // A stale former primary started as primary: not an I/O problem, and restarting it as primary cannot help.
    return (e as { code?: string }).code === CoordinatorErrorCode.ARBITER_REFUSED ? NODE_EXIT_REFUSED : ExitCode.IO;
  }
  return finished;
}

/**
 * node.role auto: the role from the arbiter's record and node.state_dir (decideStartRole), waiting for an arbiter
 * that does not answer yet. An exit code instead when the node must not start: 10 when the pair's history needs an
 * operator (its record lost, a state that is not this node's), 0 when stopped while waiting.
 */
async function startRole(config: NodeConfig, arbiter: Arbiter, logger: Logger, name: string, io: CommandIo): Promise<StartDecision | number> {
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const d = await decideStartRole({ nodeId: config.node.id, arbiter, stateDir: config.node.stateDir!, logger, signal: abort.signal });
    logger.info({ role: d.role, epoch: d.epoch, why: d.why }, `role at start: ${d.role} (${d.reason})`);
    return d;
  } catch (e) {
    await arbiter.close().catch(() => {});
    if ((e as { code?: string }).code === CoordinatorErrorCode.STOPPED) return ExitCode.OK;
    logger.error(failure(e), 'could not decide the role at start');
    io.stderr.write(`${name}: could not decide the role at start: ${(e as Error).message}\n`);
    return typeof (e as { code?: unknown }).code === 'string' ? NODE_EXIT_REFUSED : ExitCode.FAILED;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/**
 * How a start failure is logged: a typed error (one with a stable code: an address in use, a refused arbiter, a
 * missing file) is the operator's to fix and is logged as its code and message; anything else is a bug, with its
 * stack.
 */
function failure(e: unknown): Record<string, unknown> {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? { code, error: (e as Error).message } : { err: e };
}
