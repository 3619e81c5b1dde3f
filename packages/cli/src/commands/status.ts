import { parseArgs } from 'node:util';
import { ExitCode, type Command } from '../command.js';
import { formatSync } from '../client/sync-progress.js';
import { usageErrors, nodeUrls } from '../args.js';
import { getStatus, type NodeStatusDoc } from '../client/admin-client.js';

const help = `Usage: colo status [--node URL ...] [--json]

Shows, for each node: role, state, epoch, protected or not, the last checkpoint and the peer.

Options:
  --node URL   a node's admin address (repeatable). Default: COLO_NODES (comma separated), else the two
               nodes of \`colo pair\` (http://127.0.0.1:9464 and :9465).
  --json       print one JSON array of the nodes' /status documents (unreachable nodes as {node, error}).

When every node answers and each one waits as a secondary for a primary (none is primary), it says so: the
pair has no primary (both hosts were lost at once?) and \`colo claim\` is the operator's way out.

Exit codes: 0 every node answered, 1 a node is unreachable (another answered) or no node is primary (each one
waits as secondary), 2 bad usage, 3 no node could be reached (nothing listens there, or the network).
`;

/**
 * Every node answered and each one waits to join a primary: nobody holds the guest. With node.role auto that is
 * what both hosts lost at once leaves (docs/operations.md, "The role at start"); nothing but an operator ends it.
 */
function noPrimary(statuses: NodeStatusDoc[]): boolean {
  return statuses.length >= 2 && statuses.every((s) => s.role === 'secondary' && (s.state === 'not-started' || s.state.startsWith('syncing.connecting')));
}

function age(at: string | undefined): string {
  if (!at) return '';
  const s = (Date.now() - Date.parse(at)) / 1000;
  return s < 1 ? 'just now' : `${s.toFixed(s < 10 ? 1 : 0)} s ago`;
}

export function formatStatus(node: string, s: NodeStatusDoc): string {
  const lc = s.lastCheckpoint;
  return [
    `${s.nodeId} (${node})`,
    `  role        ${s.role}${s.role === 'primary' ? (s.blackhole ? ', blackhole: not protected (checkpoints go nowhere)' : s.protected ? ', protected' : ', UNPROTECTED') : ''}`,
    ...(s.reason ? [`  why         ${s.reason}`] : []),
    `  state       ${s.state}`,
    `  mode/epoch  ${s.mode} / ${s.epoch}`,
    `  peer        ${s.peer ?? 'none'}`,
    ...(s.service ? [`  service     ${s.service.host}:${s.service.port}`] : []),
    ...(formatSync(s.sync) ? [`  sync        ${formatSync(s.sync)}`] : []),
    `  checkpoint  ${lc ? `#${lc.seq} (${lc.reason}) ${age(lc.at)}, ${s.role === 'secondary' ? `applied in ${(lc.durationSeconds * 1000).toFixed(1)} ms` : `pause ${((lc.pauseSeconds ?? lc.durationSeconds) * 1000).toFixed(1)} ms`}, ${lc.pages} pages` : 'none yet'}`,
    ...arbiterLine(s.arbiter),
  ].join('\n');
}

interface ArbiterDoc {
  kind: string;
  reachable: boolean;
  pending: string | null;
  lastDecision: { purpose: string; epoch: number; won: boolean; seconds: number; unanswered: number } | null;
  lastError: { code: string; message: string } | null;
}

/** The arbiter as an operator needs it: which, reachable or not, a request waiting (output held), the last answer. */
function arbiterLine(a: unknown): string[] {
  if (!a || typeof a !== 'object') return [];
  const x = a as ArbiterDoc;
  const parts = [x.kind, x.reachable ? 'reachable' : `UNREACHABLE (${x.lastError?.code ?? 'no answer'})`];
  if (x.pending) parts.push(`WAITING to ${x.pending}: output held, no promotion`);
  const d = x.lastDecision;
  if (d) parts.push(`last: ${d.purpose} at epoch ${d.epoch} ${d.won ? 'won' : 'LOST'} in ${(d.seconds * 1000).toFixed(1)} ms${d.unanswered ? ` after ${d.unanswered} unanswered` : ''}`);
  return [`  arbiter     ${parts.join('; ')}`];
}

const command: Command = {
  path: ['status'],
  summary: 'show role, state, epoch and protection of each node',
  help,
  async run(argv, io) {
    const { values } = usageErrors(() => parseArgs({ args: argv, strict: true, options: { node: { type: 'string', multiple: true }, json: { type: 'boolean' } } }));
    const nodes = nodeUrls(values.node);
    const results = await Promise.all(
      nodes.map(async (node) => {
        try {
          return { node, status: await getStatus(node, 3000) };
        } catch (e) {
          return { node, error: (e as Error).message };
        }
      }),
    );
    if (values.json) {
      io.stdout.write(JSON.stringify(results.map((r) => ('status' in r ? { node: r.node, ...r.status } : r)), null, 2) + '\n');
    } else {
      for (const r of results) io.stdout.write(('status' in r && r.status ? formatStatus(r.node, r.status) : `${r.node}\n  UNREACHABLE: ${r.error}`) + '\n\n');
    }
    // None answered: a connection problem (I/O, 3). Some did not: the pair is found degraded (1).
    const unreachable = results.filter((r) => 'error' in r).length;
    const answered = results.flatMap((r) => ('status' in r && r.status ? [r.status] : []));
    if (unreachable === 0 && noPrimary(answered)) {
      if (!values.json) {
        io.stdout.write(
          'pair: NO PRIMARY: every node waits to join one. If both hosts were lost at once, the guest is gone with them:\n' +
            '  `colo claim --config FILE --yes` on the host to be primary, then restart it (docs/operations.md, "The role at start")\n',
        );
      }
      return ExitCode.FAILED;
    }
    return unreachable === 0 ? ExitCode.OK : unreachable === results.length ? ExitCode.IO : ExitCode.FAILED;
  },
};
export default command;
