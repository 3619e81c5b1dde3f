/**
 * `colo stream inspect FILE|-`: a readable account of a stream, one line per header or record, runs of PAGE_DATA
 * squashed into one line, checkpoints numbered, COLO control ids named. `--json` prints one JSON object instead.
 */
import { StreamError, StreamSummarizer, formatEntry, formatStats, type StreamKind, type SummaryEntry } from '@colo/stream';
import { ExitCode, type Command } from '../command.js';
import { InputError, decodeInput, parseStreamArgs, reportFailure } from './stream-verify.js';

const help = `Usage: colo stream inspect FILE|- [options]

Summarises a Xen migration v2 stream: plain save image, xl save file, checkpointed Remus/COLO main channel, or
back channel. One line per header or record with its byte offset; consecutive PAGE_DATA records are squashed
into one line (records, pfns, pages, pfn range); checkpoints are marked "checkpoint #n"; COLO control ids in
CHECKPOINT_STATE records are named (NEW_CHECKPOINT, SVM_SUSPENDED, SVM_READY, SVM_RESUMED). The stream is fully
checked on the way (as by \`colo stream verify\`): the first error ends the listing.

Options:
  --kind auto|xl|libxl|libxc|back-channel
                              what the input is (default auto: detected from the first bytes)
  --json                      print one JSON object: {"kind", "bytes", "valid", "entries": [...], "stats", "error"?}
                              with entries {offset, what, layer, type?, checkpoint?, records?, pfns?, pages?,
                              minPfn?, maxPfn?, detail?}
  --max-record-length N       refuse records longer than N bytes (default 128MiB)
  --partial                   accept a checkpointed stream that stops after a complete checkpoint
  -h, --help                  this text

Exit codes: 0 valid stream listed, 1 invalid stream (listed up to the error), 2 bad usage, 3 input cannot be
read, 70 internal error.
`;

const command: Command = {
  path: ['stream', 'inspect'],
  summary: 'summarise a migration v2 stream (file or -)',
  help,
  async run(argv, io) {
    const args = parseStreamArgs(argv, true);
    let kind: StreamKind | undefined;
    let summary: StreamSummarizer | undefined;
    const entries: SummaryEntry[] = [];
    const emit = (list: SummaryEntry[]) => {
      if (args.json) entries.push(...list);
      else for (const e of list) io.stdout.write(formatEntry(e) + '\n');
    };
    try {
      const result = await decodeInput(
        args,
        io,
        (item) => emit(summary!.add(item)),
        (k) => {
          kind = k;
          summary = new StreamSummarizer(k);
          if (!args.json) io.stdout.write(`${k} stream${args.kind === 'auto' ? ' (detected)' : ''}\n${'offset'.padStart(12)}  item\n`);
        },
      );
      emit(summary!.finish());
      if (args.json) io.stdout.write(JSON.stringify({ kind: result.kind, bytes: result.bytes, valid: true, entries, stats: result.stats }, null, 2) + '\n');
      else io.stdout.write(`${formatStats(result.stats, result.bytes)}\n`);
      return ExitCode.OK;
    } catch (e) {
      if (summary) emit(summary.finish());
      if (args.json && e instanceof StreamError) {
        const error = { code: e.code, offset: e.offset, message: e.message };
        io.stdout.write(JSON.stringify({ kind, valid: false, entries, stats: summary?.stats, error }, null, 2) + '\n');
        return ExitCode.FAILED;
      }
      if (e instanceof InputError || e instanceof StreamError) return reportFailure(e, kind ?? 'migration v2', io, 'stream inspect');
      throw e;
    }
  },
};

export default command;
