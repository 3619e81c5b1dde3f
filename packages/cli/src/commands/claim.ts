import { ArbiterError, claimPair, createLogger, PAIR_HOLDER, type EpochRecord } from '@colo/coordinator';
import { ExitCode, type Command } from '../command.js';
import { ConfigError, loadConfig, settingArgs } from '../config/load.js';
import { arbiterFor } from '../node/arbiter.js';

const help = `Usage: colo claim --config FILE [--<section>-<key> VALUE ...] [--yes]

An operator's decision for a pair that cannot go on by itself: the pair's next epoch becomes this node's alone
(node.id, in the arbiter of the config: local or etcd). With node.role auto the node then starts as primary with
a new guest, and the other node joins it as its secondary (docs/operations.md, "The role at start").

For when no node holds the guest any more and the pair waits: both hosts lost at once while protected (each
restarted node waits as secondary for a primary that is gone), or a node refused with COLO_PAIR_HISTORY_LOST
(the arbiter's record was lost). Whatever guest the other node may still hold is given up: it loses its next
decision and stands down. Without --yes it shows the pair's record and what it would do.

  colo claim --config /etc/colo/colo.yaml --yes && systemctl restart colo-node

Exit codes: 0 claimed (or already this node's alone), 1 the record changed while claiming (nothing written;
look again), 2 bad usage or configuration, --yes missing, or no arbiter (arbiter.kind none), 3 the arbiter did
not answer.
`;

function describe(r: EpochRecord | null): string {
  if (r === null) return 'no record';
  return `epoch ${r.epoch}, held by ${r.holder === PAIR_HOLDER ? 'the protected pair' : `node ${r.holder}`}`;
}

const command: Command = {
  path: ['claim'],
  summary: "make the pair's next epoch this node's alone (both hosts lost, a record lost)",
  help,
  async run(argv, io) {
    let values: Record<string, string | boolean | undefined>;
    let config;
    try {
      const args = settingArgs(argv, { yes: { type: 'boolean' } });
      values = args.values;
      config = loadConfig({ file: args.file, env: process.env, flags: args.flags });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      io.stderr.write(`colo claim: invalid configuration: ${e.message} (${e.code})\n`);
      return ExitCode.USAGE;
    }
    if (config.arbiter.kind === 'none') {
      io.stderr.write('colo claim: arbiter.kind is none: there is no record to claim\n');
      return ExitCode.USAGE;
    }
    const arbiter = arbiterFor(config, createLogger({ nodeId: config.node.id, level: 'silent' }));
    try {
      if (values.yes !== true) {
        const record = await arbiter.read();
        io.stdout.write(`pair record: ${describe(record)} (${arbiter.where})\n`);
        if (record?.holder === config.node.id) {
          io.stdout.write(`the pair's epoch is already node ${config.node.id}'s alone: nothing to claim\n`);
          return ExitCode.OK;
        }
        // What the other node may still be doing, in the record's words: the operator checks it before --yes.
        const risk =
          record === null
            ? 'no node is recorded: make sure neither serves'
            : record.holder === PAIR_HOLDER
              ? 'the pair was protected: make sure the other node is down (colo status)'
              : `node ${record.holder} holds the epoch alone and may be serving clients now: make sure it is gone`;
        io.stderr.write(`colo claim: would make the next epoch node ${config.node.id}'s alone, giving up any guest the other node holds (${risk}); add --yes to do it\n`);
        return ExitCode.USAGE;
      }
      const c = await claimPair({ nodeId: config.node.id, arbiter, stateDir: config.node.stateDir });
      io.stdout.write(`pair record was: ${describe(c.before)} (${arbiter.where})\n`);
      if (!c.claimed) {
        io.stderr.write(`colo claim: the record changed meanwhile (now ${describe(c.after)}): nothing written; look again\n`);
        return ExitCode.FAILED;
      }
      io.stdout.write(`pair record is:  ${describe(c.after)}: start node ${config.node.id} (node.role auto: primary, a new guest); the other node joins it\n`);
      return ExitCode.OK;
    } catch (e) {
      if (e instanceof ArbiterError) {
        io.stderr.write(`colo claim: ${e.message}\n`);
        return ExitCode.IO;
      }
      if ((e as { code?: string }).code === 'COLO_STATE_CORRUPT') {
        io.stderr.write(`colo claim: ${(e as Error).message}\n`);
        return ExitCode.USAGE;
      }
      throw e;
    } finally {
      await arbiter.close().catch(() => {});
    }
  },
};
export default command;
