import type { Command } from '../command.js';
import { NODE_HELP_OPTIONS, runNode } from '../node/run-node.js';

const command: Command = {
  path: ['node'],
  summary: '',
  help: `Usage: colo node [--config FILE] [--<section>-<key> VALUE ...]

Runs one colo node; its role comes from node.role in the config (or --node-role).

${NODE_HELP_OPTIONS}
`,
  run: (argv, io) => runNode(argv, io, undefined),
};
export default command;
