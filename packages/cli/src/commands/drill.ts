import { parseArgs } from 'node:util';
import { ExitCode, UsageError, type Command } from '../command.js';
import { adminToken, nodeUrls, usageErrors } from '../args.js';
import { formatDrillReport, runDrill } from '../drill/drill.js';

const help = `Usage: colo drill [--restart-secondary] [--node URL ...] [--token-file FILE] [--keys N] [--no-reprotect] [--json]

Runs a whole failover drill against a running pair (the nodes need admin.allow_crash; colo pair sets it):
  1. checks the pair is protected (a primary with a synchronised secondary);
  2. writes a ledger of N keys (and a counter) through the primary's service, recording every acknowledged write;
  3. crashes the primary (POST /crash: the node dies at once, as on a power loss);
  4. measures the time until the secondary serves as primary (RTO);
  5. reads every acknowledged key back from the new primary (none may be missing; the counter never goes back);
  6. waits until the pair is protected again (a secondary rejoined; \`colo pair\` restarts the crashed node as one).
Prints a report; exits non-zero if any step failed.

With --restart-secondary (VMware FT's "test restart secondary") it crashes the secondary instead: the primary must
keep serving (writes go on throughout, each acknowledged by the same primary), the pair must re-protect (a
secondary rejoins and synchronises), and every acknowledged write reads back; the report gives the time to
re-protect and the longest wait for a write meanwhile.

Options:
  --node URL            admin address of a node (repeat for both). Default: COLO_NODES, else \`colo pair\`'s nodes.
  --token-file FILE     admin token (else COLO_ADMIN_TOKEN / COLO_ADMIN_TOKEN_FILE); needed to crash the primary.
  --keys N              ledger size (default 500)
  --protect-timeout S   wait this long for the pair to be protected first (default 60)
  --failover-timeout S  longest acceptable time for the secondary to serve (default 30)
  --reprotect-timeout S wait this long for re-protection (default 120)
  --no-reprotect        do not wait for re-protection
  --json                print the report as JSON

Exit codes: 0 drill passed, 1 a step failed (the report says which), 2 bad usage (also: a node in blackhole
mode, which protects nothing: the drill refuses to crash it).
`;

const command: Command = {
  path: ['drill'],
  summary: 'run a failover drill: ledger, crash, RTO, verify, re-protect',
  help,
  async run(argv, io) {
    const { values } = usageErrors(() => parseArgs({ args: argv, strict: true, options: {
      node: { type: 'string', multiple: true },
      'token-file': { type: 'string' },
      keys: { type: 'string', default: '500' },
      'protect-timeout': { type: 'string', default: '60' },
      'failover-timeout': { type: 'string', default: '30' },
      'reprotect-timeout': { type: 'string', default: '120' },
      'no-reprotect': { type: 'boolean' },
      'restart-secondary': { type: 'boolean' },
      json: { type: 'boolean' },
    } }));
    const num = (name: string, v: string) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number, not ${JSON.stringify(v)}`);
      return n;
    };
    if (values['restart-secondary'] && values['no-reprotect']) throw new UsageError('--restart-secondary waits for re-protection: it is what that drill measures');
    const report = await runDrill(
      {
        kind: values['restart-secondary'] ? 'restart-secondary' : 'failover',
        nodes: nodeUrls(values.node),
        token: adminToken(values['token-file']),
        keys: Math.floor(num('keys', values.keys)),
        protectTimeoutMs: num('protect-timeout', values['protect-timeout']) * 1000,
        failoverTimeoutMs: num('failover-timeout', values['failover-timeout']) * 1000,
        reprotectTimeoutMs: num('reprotect-timeout', values['reprotect-timeout']) * 1000,
        waitReprotect: !values['no-reprotect'],
      },
      {},
      values.json ? () => {} : (line) => io.stderr.write(`  ${line}\n`),
    );
    io.stdout.write((values.json ? JSON.stringify(report, null, 2) : formatDrillReport(report)) + '\n');
    if (report.refused) return ExitCode.USAGE;
    return report.ok ? ExitCode.OK : ExitCode.FAILED;
  },
};
export default command;
