import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { restoreImage, isDomainError } from '@colo/domain';
import { isStreamError } from '@colo/stream';
import { ExitCode, UsageError, type Command } from '../command.js';
import { parseDirtyRate, parseListen, serveGuest, usage } from './guest.js';
import { parseArgs } from 'node:util';

const help = `Usage: colo restore FILE --listen HOST:PORT [--control HOST:PORT] [--dirty-rate N]

Serves a guest restored from a plain libxl v2 save image (\`colo save\`), like \`colo guest\`. The whole image
is read and checked before the guest starts: a corrupt, truncated or mismatched image is refused and nothing
is served. Connections recorded in the image belonged to clients of the saved guest and are closed.

Options:
  --listen HOST:PORT    where clients connect (required; port 0 picks a free port, printed on start).
  --control HOST:PORT   serve the control API (GET /image, GET /status), as \`colo guest\` does.
  --dirty-rate N        pages per second of background activity. Default 0.

Exit codes: 0 stopped by a signal, 1 the image is refused (its error code is printed, e.g. STREAM_TRUNCATED,
DOMAIN_IMAGE_PAGE_COUNT_MISMATCH), 2 bad usage, 3 I/O error (FILE unreadable, cannot listen).
`;

const command: Command = {
  path: ['restore'],
  summary: 'serve a guest restored from a libxl v2 image',
  help,
  async run(argv, io) {
    const { values, positionals } = usage(() =>
      parseArgs({
        args: argv,
        strict: true,
        allowPositionals: true,
        options: { listen: { type: 'string' }, control: { type: 'string' }, 'dirty-rate': { type: 'string' } },
      }),
    );
    if (positionals.length !== 1) throw new UsageError('exactly one image FILE is required');
    const file = positionals[0]!;
    const listen = parseListen(values.listen, '--listen', true);
    const control = parseListen(values.control, '--control', false);
    const dirtyRate = parseDirtyRate(values['dirty-rate']);
    try {
      await (await open(file, 'r')).close();
    } catch (e) {
      io.stderr.write(`colo restore: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      return ExitCode.IO;
    }
    let guest;
    try {
      guest = await restoreImage(createReadStream(file), { guest: { backgroundDirtyPagesPerSecond: dirtyRate } });
    } catch (e) {
      if (isStreamError(e) || isDomainError(e)) {
        io.stderr.write(`colo restore: ${file} is refused: ${e.message}\n`);
        return ExitCode.FAILED;
      }
      io.stderr.write(`colo restore: cannot read ${file}: ${(e as Error).message}\n`);
      return ExitCode.IO;
    }
    for (const id of guest.openConnections) guest.closeConnection(id);
    io.stdout.write(`restored guest ${guest.name} (${guest.keyCount} keys) from ${file}\n`);
    return serveGuest(guest, { listen, control }, io);
  },
};
export default command;
