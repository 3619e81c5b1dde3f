/**
 * `colo stream verify FILE|-`: checks a migration v2 stream (plain image, xl file, checkpointed main channel or
 * back channel) with every check of Xen's reader and verifier, reading it in chunks so any size fits in memory.
 * Also home of the input plumbing `colo stream inspect` shares.
 */
import { createReadStream } from 'node:fs';
import { DETECT_BYTES, DEFAULT_MAX_RECORD_LENGTH, StreamDecoder, StreamError, StreamSummarizer, detectKind, formatStats, type StreamItem, type StreamKind } from '@colo/stream';
import { ExitCode, UsageError, type Command, type CommandIo } from '../command.js';

const KINDS = ['auto', 'xl', 'libxl', 'libxc', 'back-channel'] as const;
const READ_CHUNK = 1024 * 1024;

export interface StreamArgs {
  file: string;
  kind: (typeof KINDS)[number];
  maxRecordLength: number;
  partial: boolean;
  json: boolean;
}

/** Parses FILE|- and the options both stream commands take (`--json` only where `allowJson`). */
export function parseStreamArgs(argv: string[], allowJson: boolean): StreamArgs {
  const args: Partial<StreamArgs> = { kind: 'auto', maxRecordLength: DEFAULT_MAX_RECORD_LENGTH, partial: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [name, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      return v;
    };
    if (name === '--kind') {
      const k = value();
      if (!(KINDS as readonly string[]).includes(k)) throw new UsageError(`--kind must be one of ${KINDS.join(', ')}, got '${k}'`);
      args.kind = k as StreamArgs['kind'];
    } else if (name === '--max-record-length') {
      args.maxRecordLength = parseSize(value());
    } else if (name === '--partial' && inline === undefined) {
      args.partial = true;
    } else if (name === '--json' && allowJson && inline === undefined) {
      args.json = true;
    } else if (a !== '-' && a.startsWith('-')) {
      throw new UsageError(`unknown option '${a}'`);
    } else if (args.file === undefined) {
      args.file = a;
    } else {
      throw new UsageError(`one input only (got '${args.file}' and '${a}')`);
    }
  }
  if (args.file === undefined) throw new UsageError('missing FILE (or - for standard input)');
  return args as StreamArgs;
}

/** "4096", "64KiB", "128MiB", "1GiB" -> bytes. */
function parseSize(text: string): number {
  const m = /^(\d+)\s*(|B|KiB|MiB|GiB)$/.exec(text.trim());
  if (!m) throw new UsageError(`--max-record-length takes bytes, optionally with KiB, MiB or GiB; got '${text}'`);
  const n = Number(m[1]) * ({ '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as Record<string, number>)[m[2]!]!;
  if (!Number.isSafeInteger(n) || n > 0xffffffff) throw new UsageError(`--max-record-length ${text} is above the format's 4 GiB`);
  return n;
}

/** A failure to read the input (not a fault of the stream). */
export class InputError extends Error {
  override readonly name = 'InputError';
}

export interface DecodeResult {
  kind: StreamKind;
  bytes: number;
  stats: StreamStats;
}
type StreamStats = StreamSummarizer['stats'];

/**
 * Reads the input in chunks, detects the kind if asked, decodes, and hands every item to `onItem`.
 * Throws StreamError for an invalid stream and InputError when the input cannot be read.
 */
export async function decodeInput(
  args: StreamArgs,
  io: CommandIo,
  onItem: (item: StreamItem) => void,
  onKind: (kind: StreamKind) => void = () => {},
): Promise<DecodeResult> {
  const source = (args.file === '-' ? io.stdin : createReadStream(args.file, { highWaterMark: READ_CHUNK })) as AsyncIterable<Uint8Array | string>;
  const it = source[Symbol.asyncIterator]();
  const next = async (): Promise<Uint8Array | undefined> => {
    try {
      const r = await it.next();
      if (r.done) return undefined;
      return typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    } catch (e) {
      throw new InputError(`cannot read ${args.file === '-' ? 'standard input' : args.file}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  };
  const head: Uint8Array[] = [];
  let kind: StreamKind;
  if (args.kind === 'auto') {
    let have = 0;
    while (have < DETECT_BYTES) {
      const c = await next();
      if (!c) break;
      head.push(c);
      have += c.length;
    }
    kind = detectKind(Buffer.concat(head));
  } else kind = args.kind;
  onKind(kind);

  const decoder = new StreamDecoder({ kind, maxRecordLength: args.maxRecordLength, acceptCheckpointBoundary: args.partial });
  const summary = new StreamSummarizer(kind);
  let bytes = 0;
  const feed = (c: Uint8Array) => {
    bytes += c.length;
    const out: StreamItem[] = [];
    try {
      decoder.pushInto(c, out);
    } finally {
      // Report the valid items before an error too: the listing then stops right at the bad record.
      for (const item of out) {
        summary.add(item);
        onItem(item);
      }
    }
  };
  try {
    for (const c of head) feed(c);
    for (let c = await next(); c; c = await next()) feed(c);
    decoder.end();
  } finally {
    if (it.return) await it.return().catch(() => undefined);
  }
  summary.finish();
  return { kind, bytes, stats: summary.stats };
}

/** Maps a failure of decodeInput to an exit code, printing it; rethrows what is neither (a bug). */
export function reportFailure(e: unknown, kindHint: string, io: CommandIo, command: string): number {
  if (e instanceof StreamError) {
    io.stderr.write(`invalid ${kindHint} stream: ${e.message}\n`);
    return ExitCode.FAILED;
  }
  if (e instanceof InputError) {
    io.stderr.write(`colo ${command}: ${e.message}\n`);
    return ExitCode.IO;
  }
  throw e;
}

const help = `Usage: colo stream verify FILE|- [options]

Checks a Xen migration v2 stream with every check of Xen's own reader and verifier (headers, reserved bits,
padding, exact record lengths, page types, record placement), including checkpointed Remus/COLO streams, which
Xen's verify-stream-v2 cannot follow. Reads FILE (or standard input for -) in chunks: any size fits in memory.

Options:
  --kind auto|xl|libxl|libxc|back-channel
                              what the input is (default auto: xl magic, "LibxlFmt", libxc marker, else a
                              header-less back channel)
  --max-record-length N       refuse records longer than N bytes (KiB/MiB/GiB suffixes allowed; default 128MiB,
                              Xen's limit), before buffering them
  --partial                   accept a checkpointed stream that stops right after a complete checkpoint (a
                              recording of a replication still running) instead of requiring END
  -h, --help                  this text

Output: one line. Valid: "valid <kind> stream: <bytes>, <records>, ...". Invalid: the error code, the byte offset
of the failing header or record, and what is wrong, e.g.
  invalid libxl stream: libxc HVM_PARAMS record has length 12; it must be 8 + 16 x count (STREAM_BAD_LENGTH at byte 1208)

Exit codes: 0 valid, 1 invalid stream, 2 bad usage, 3 input cannot be read, 70 internal error.
`;

const command: Command = {
  path: ['stream', 'verify'],
  summary: 'check a migration v2 stream; exit 0 if valid',
  help,
  async run(argv, io) {
    const args = parseStreamArgs(argv, false);
    let kind = args.kind === 'auto' ? 'migration v2' : args.kind;
    try {
      const result = await decodeInput(
        args,
        io,
        () => {},
        (k) => (kind = k),
      );
      io.stdout.write(`${formatStats(result.stats, result.bytes)}\n`);
      return ExitCode.OK;
    } catch (e) {
      return reportFailure(e, kind, io, 'stream verify');
    }
  },
};

export default command;
