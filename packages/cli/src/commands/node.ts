import type { Command } from '../command.js';
import { NODE_HELP_OPTIONS, runNode } from '../node/run-node.js';

const command: Command = {
  path: ['node'],
  summary: '',
  help: `Usage: colo node [--config FILE] [--<section>-<key> VALUE ...]

Runs one colo node; its role comes from node.role in the config (or --node-role): auto decides it at every
start from the arbiter's record and node.state_dir (docs/operations.md, "The role at start"); primary and
secondary fix it.

${NODE_HELP_OPTIONS}
`,
  run: (argv, io) => runNode(argv, io, undefined),
};
export default command;
