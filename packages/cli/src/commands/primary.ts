import type { Command } from '../command.js';
import { NODE_HELP_OPTIONS, runNode } from '../node/run-node.js';

const command: Command = {
  path: ['primary'],
  summary: '',
  help: `Usage: colo primary [--config FILE] [--<section>-<key> VALUE ...]

Runs a node as primary: it creates the simulated guest (or restores guest.image), serves clients on
service.listen and accepts a secondary on replication.listen.

${NODE_HELP_OPTIONS}
`,
  run: (argv, io) => runNode(argv, io, 'primary'),
};
export default command;
