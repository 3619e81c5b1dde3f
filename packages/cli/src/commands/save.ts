import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { SimulatedGuest, saveImage } from '@colo/domain';
import { StreamDecoder, isStreamError } from '@colo/stream';
import { ExitCode, UsageError, type Command } from '../command.js';
import { parseMemory, usage } from './guest.js';
import { parseArgs } from 'node:util';

const help = `Usage: colo save [--from CONTROL_URL] [--memory SIZE] [--name NAME] -o FILE

Writes a plain libxl v2 save image (the format of \`xl save\` minus its xl header), which Xen's own stream
verifier accepts: of a running guest, fetched from its control API, or of a fresh empty guest.

Options:
  -o, --output FILE     where to write the image (required). Written to FILE.partial first and renamed when
                        complete and valid, so a failed save never leaves a truncated FILE.
  --from CONTROL_URL    a running guest's control API (\`colo guest --control HOST:PORT\`), e.g.
                        http://127.0.0.1:7000; its GET /image is fetched and checked while it is written.
  --memory SIZE         without --from: the fresh guest's memory. Default 256MiB.
  --name NAME           without --from: the fresh guest's name. Default colo-guest.

Exit codes: 0 saved, 1 the guest sent an invalid or incomplete image (its error code is printed),
2 bad usage, 3 I/O error (cannot reach the guest, cannot write FILE).
`;

/** Chunks of the image: from the control API, or from a fresh guest. */
async function* source(from: string | undefined, memoryBytes: number, name: string | undefined): AsyncGenerator<Uint8Array> {
  if (from === undefined) {
    const guest = new SimulatedGuest({ memoryBytes, startSuspended: true, ...(name !== undefined ? { name } : {}) });
    try {
      yield* saveImage(guest);
    } finally {
      guest.destroy();
    }
    return;
  }
  const url = new URL(from);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/image';
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new FetchError(`GET ${url} answered ${res.status} ${res.statusText}`);
  yield* res.body as unknown as AsyncIterable<Uint8Array>;
}

class FetchError extends Error {}

const command: Command = {
  path: ['save'],
  summary: 'write a libxl v2 image of a guest',
  help,
  async run(argv, io) {
    const { values } = usage(() =>
      parseArgs({
        args: argv,
        strict: true,
        options: { output: { type: 'string', short: 'o' }, from: { type: 'string' }, memory: { type: 'string' }, name: { type: 'string' } },
      }),
    );
    if (!values.output) throw new UsageError('-o FILE is required');
    if (values.from !== undefined && (values.memory !== undefined || values.name !== undefined)) {
      throw new UsageError('--memory and --name describe a fresh guest; they cannot be used with --from');
    }
    if (values.from !== undefined && !/^https?:\/\//.test(values.from)) throw new UsageError(`--from must be an http:// URL, got '${values.from}'`);
    const memoryBytes = parseMemory(values.memory);
    const file = values.output;
    const partial = `${file}.partial`;
    const out = createWriteStream(partial);
    // Every byte goes through the decoder too: a guest that dies mid-transfer gives a truncated stream, refused.
    const check = new StreamDecoder({ kind: 'libxl' });
    let bytes = 0;
    try {
      await once(out, 'open');
      for await (const chunk of source(values.from, memoryBytes, values.name)) {
        check.push(chunk);
        bytes += chunk.length;
        if (!out.write(chunk)) await once(out, 'drain');
      }
      check.end();
      out.end();
      await once(out, 'finish');
      await rename(partial, file);
    } catch (e) {
      out.destroy();
      await rm(partial, { force: true });
      if (isStreamError(e)) {
        io.stderr.write(`colo save: the image is invalid: ${e.message}\n`);
        return ExitCode.FAILED;
      }
      io.stderr.write(`colo save: ${e instanceof FetchError || e instanceof TypeError ? `cannot fetch the image from ${values.from}: ${(e as Error).message}${(e as Error).cause ? ` (${((e as Error).cause as Error).message})` : ''}` : (e as Error).message}\n`);
      return ExitCode.IO;
    }
    io.stdout.write(`saved ${bytes} bytes to ${file}\n`);
    return ExitCode.OK;
  },
};
export default command;
