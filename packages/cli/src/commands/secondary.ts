import type { Command } from '../command.js';
import { NODE_HELP_OPTIONS, runNode } from '../node/run-node.js';

const command: Command = {
  path: ['secondary'],
  summary: '',
  help: `Usage: colo secondary [--config FILE] [--<section>-<key> VALUE ...]

Runs a node as secondary: it dials the primary at replication.peer, receives the guest (live migration),
and follows it by checkpoints. If the primary is lost after the first checkpoint it takes over.

${NODE_HELP_OPTIONS}
`,
  run: (argv, io) => runNode(argv, io, 'secondary'),
};
export default command;
