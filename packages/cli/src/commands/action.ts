import { parseArgs } from 'node:util';
import { ExitCode, type Command } from '../command.js';
import { adminToken, usageErrors } from '../args.js';
import { AdminClientError, postAction } from '../client/admin-client.js';

/** `colo checkpoint` and `colo failover`: one authenticated POST to one node's admin API. */
export function actionCommand(action: 'checkpoint' | 'failover', summary: string, detail: string): Command {
  return {
    path: [action],
    summary,
    help: `Usage: colo ${action} --node URL [--token-file FILE] [--json]

${detail}

Options:
  --node URL         the node's admin address, e.g. http://127.0.0.1:9464 (required)
  --token-file FILE  file holding the admin token (else COLO_ADMIN_TOKEN or COLO_ADMIN_TOKEN_FILE)
  --json             print the node's JSON answer

Exit codes: 0 done, 1 the node refused or failed (401 = missing/wrong token), 2 bad usage, 3 node unreachable.
`,
    async run(argv, io) {
      const { values } = usageErrors(() => parseArgs({ args: argv, strict: true, options: { node: { type: 'string' }, 'token-file': { type: 'string' }, json: { type: 'boolean' } } }));
      if (!values.node) {
        io.stderr.write(`colo ${action}: --node URL is required\n`);
        return ExitCode.USAGE;
      }
      try {
        const result = await postAction(values.node, action, adminToken(values['token-file']));
        io.stdout.write(values.json ? JSON.stringify(result, null, 2) + '\n' : `${action}: done on ${values.node}\n${JSON.stringify(result)}\n`);
        return ExitCode.OK;
      } catch (e) {
        if (e instanceof AdminClientError) {
          io.stderr.write(`colo ${action}: ${e.message} (${e.code})\n`);
          return e.code === 'ADMIN_UNREACHABLE' ? ExitCode.IO : ExitCode.FAILED;
        }
        throw e;
      }
    },
  };
}
