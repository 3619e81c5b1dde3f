import type { KvStore } from './kv-store.js';
import type { ReplyWriter } from './resp-reply.js';
import { INT64_MIN, parseInt64 } from './int64.js';

/**
 * The guest's RESP2 key-value service: command semantics on top of the in-page store. Deterministic: a reply
 * and every page write depend only on the store's pages and the command, except TIME (reads the node's clock)
 * and RANDOMKEY (node-local random), the service's two declared sources of nondeterminism.
 */
export interface ServiceContext {
  readonly store: KvStore;
  /** The guest's memory, so values are copied from their pages straight into replies. */
  /** Not readonly: a guest that adopts staged memory (SimulatedGuest.stageMemory) points it at the new buffer. */
  memory: Buffer;
  /** Milliseconds since the epoch, with a fraction (TIME). */
  readonly clock: () => number;
  /** Uniform in [0, 1) (RANDOMKEY). */
  readonly random: () => number;
  /** For INFO. */
  readonly guestName: string;
}

/** What a command tells the connection to do next. */
export const Next = { CONTINUE: 0, CLOSE: 1 } as const;
export type Next = (typeof Next)[keyof typeof Next];

type Handler = (args: Buffer[], out: ReplyWriter, ctx: ServiceContext, connection: number) => Next | void;

const OOM = 'OOM guest memory full';
const NOT_INTEGER = 'ERR value is not an integer or out of range';

function wrongArity(name: string): string {
  return `ERR wrong number of arguments for '${name}' command`;
}

function lower(b: Buffer): string {
  return b.toString('latin1').toLowerCase();
}

function incrBy(key: Buffer, delta: number | bigint, out: ReplyWriter, ctx: ServiceContext): void {
  const r = ctx.store.incrementBy(key, delta);
  if (r === 'not-integer') return out.error(NOT_INTEGER);
  if (r === 'overflow') return out.error('ERR increment or decrement would overflow');
  if (r === 'oom') return out.error(OOM);
  out.integer(r);
}

function deltaArg(b: Buffer, out: ReplyWriter, negate: boolean): number | bigint | undefined {
  const d = parseInt64(b);
  if (d === undefined) {
    out.error(NOT_INTEGER);
    return undefined;
  }
  if (!negate) return d;
  if (typeof d === 'bigint' && d === INT64_MIN) {
    out.error('ERR decrement would overflow');
    return undefined;
  }
  return typeof d === 'number' ? -d : -d;
}

/** What CONFIG GET answers: enough for redis-cli and redis-benchmark, which ask for save and appendonly. */
function configTable(ctx: ServiceContext): Record<string, string> {
  return {
    save: '',
    appendonly: 'no',
    databases: '1',
    maxmemory: String(ctx.store.capacityBytes),
    'maxmemory-policy': 'noeviction',
    'proto-max-bulk-len': String(512 * 1024 * 1024),
  };
}

function globToRegExp(glob: string): RegExp {
  const src = glob.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${src}$`, 'i');
}

function info(ctx: ServiceContext, section: string | undefined): string {
  const sections: Record<string, string[]> = {
    server: ['redis_version:7.0.0', 'redis_mode:standalone', 'os:colo simulated guest', `colo_guest:${ctx.guestName}`, 'arch_bits:64', 'tcp_port:0'],
    memory: [`used_memory:${ctx.store.usedBytes}`, `maxmemory:${ctx.store.capacityBytes}`, 'maxmemory_policy:noeviction'],
    persistence: ['loading:0', 'rdb_bgsave_in_progress:0', 'aof_enabled:0'],
    keyspace: ctx.store.keyCount > 0 ? [`db0:keys=${ctx.store.keyCount},expires=0,avg_ttl=0`] : [],
  };
  const wanted = !section || section === 'all' || section === 'default' || section === 'everything' ? Object.keys(sections) : [section];
  const parts: string[] = [];
  for (const name of wanted) {
    const lines = sections[name];
    if (!lines) continue;
    parts.push(`# ${name[0]!.toUpperCase()}${name.slice(1)}\r\n${lines.map((l) => `${l}\r\n`).join('')}`);
  }
  return parts.join('\r\n');
}

const handlers: Record<string, Handler> = {
  ping(args, out) {
    if (args.length > 2) return out.error(wrongArity('ping'));
    if (args.length === 2) out.bulk(args[1]!);
    else out.simple('PONG');
  },
  echo(args, out) {
    if (args.length !== 2) return out.error(wrongArity('echo'));
    out.bulk(args[1]!);
  },
  get(args, out, ctx) {
    if (args.length !== 2) return out.error(wrongArity('get'));
    const v = ctx.store.get(args[1]!);
    if (!v) return out.nil();
    out.bulk(ctx.memory, v.offset, v.offset + v.length);
  },
  set(args, out, ctx) {
    if (args.length < 3) return out.error(wrongArity('set'));
    let mode: 'always' | 'nx' | 'xx' = 'always';
    let get = false;
    for (let i = 3; i < args.length; i++) {
      const opt = lower(args[i]!);
      if (opt === 'nx' && mode === 'always') mode = 'nx';
      else if (opt === 'xx' && mode === 'always') mode = 'xx';
      else if (opt === 'get') get = true;
      else if (opt === 'keepttl') continue; // no key has a TTL, so keeping it is a no-op
      else if (opt === 'ex' || opt === 'px' || opt === 'exat' || opt === 'pxat') {
        return out.error('ERR SET expiry options (EX/PX/EXAT/PXAT) are not supported: expiry would make the guest depend on its clock');
      } else return out.error('ERR syntax error');
    }
    const key = args[1]!;
    const old = get ? ctx.store.valueView(key) : undefined;
    const oldCopy = old ? Buffer.from(old) : undefined;
    const r = ctx.store.set(key, args[2]!, mode);
    if (r === 'oom') return out.error(OOM);
    if (get) return oldCopy ? out.bulk(oldCopy) : out.nil();
    if (r === 'skipped') return out.nil();
    out.ok();
  },
  setnx(args, out, ctx) {
    if (args.length !== 3) return out.error(wrongArity('setnx'));
    const r = ctx.store.set(args[1]!, args[2]!, 'nx');
    if (r === 'oom') return out.error(OOM);
    out.integer(r === 'ok' ? 1 : 0);
  },
  del(args, out, ctx) {
    if (args.length < 2) return out.error(wrongArity('del'));
    let n = 0;
    for (let i = 1; i < args.length; i++) if (ctx.store.delete(args[i]!)) n++;
    out.integer(n);
  },
  exists(args, out, ctx) {
    if (args.length < 2) return out.error(wrongArity('exists'));
    let n = 0;
    for (let i = 1; i < args.length; i++) if (ctx.store.has(args[i]!)) n++;
    out.integer(n);
  },
  incr(args, out, ctx) {
    if (args.length !== 2) return out.error(wrongArity('incr'));
    incrBy(args[1]!, 1, out, ctx);
  },
  decr(args, out, ctx) {
    if (args.length !== 2) return out.error(wrongArity('decr'));
    incrBy(args[1]!, -1, out, ctx);
  },
  incrby(args, out, ctx) {
    if (args.length !== 3) return out.error(wrongArity('incrby'));
    const d = deltaArg(args[2]!, out, false);
    if (d !== undefined) incrBy(args[1]!, d, out, ctx);
  },
  decrby(args, out, ctx) {
    if (args.length !== 3) return out.error(wrongArity('decrby'));
    const d = deltaArg(args[2]!, out, true);
    if (d !== undefined) incrBy(args[1]!, d, out, ctx);
  },
  append(args, out, ctx) {
    if (args.length !== 3) return out.error(wrongArity('append'));
    const n = ctx.store.append(args[1]!, args[2]!);
    if (n < 0) return out.error(OOM);
    out.integer(n);
  },
  strlen(args, out, ctx) {
    if (args.length !== 2) return out.error(wrongArity('strlen'));
    out.integer(ctx.store.get(args[1]!)?.length ?? 0);
  },
  mset(args, out, ctx) {
    if (args.length < 3 || args.length % 2 === 0) return out.error(wrongArity('mset'));
    // Pairs are applied in order; on a full heap the pairs before the failing one stay set (deterministically).
    for (let i = 1; i < args.length; i += 2) {
      if (ctx.store.set(args[i]!, args[i + 1]!) === 'oom') return out.error(OOM);
    }
    out.ok();
  },
  mget(args, out, ctx) {
    if (args.length < 2) return out.error(wrongArity('mget'));
    out.arrayHeader(args.length - 1);
    const bytes = ctx.memory;
    for (let i = 1; i < args.length; i++) {
      const v = ctx.store.get(args[i]!);
      if (v) out.bulk(bytes, v.offset, v.offset + v.length);
      else out.nil();
    }
  },
  dbsize(args, out, ctx) {
    if (args.length !== 1) return out.error(wrongArity('dbsize'));
    out.integer(ctx.store.keyCount);
  },
  flushall(args, out, ctx) {
    if (args.length > 2) return out.error(wrongArity('flushall'));
    if (args.length === 2 && !['sync', 'async'].includes(lower(args[1]!))) return out.error('ERR syntax error');
    ctx.store.flush();
    out.ok();
  },
  time(args, out, ctx) {
    if (args.length !== 1) return out.error(wrongArity('time'));
    const ms = ctx.clock();
    const seconds = Math.floor(ms / 1000);
    const micros = Math.floor((ms - seconds * 1000) * 1000);
    ctx.store.recordClock(seconds, micros);
    out.arrayHeader(2);
    out.bulkString(String(seconds));
    out.bulkString(String(micros));
  },
  randomkey(args, out, ctx) {
    if (args.length !== 1) return out.error(wrongArity('randomkey'));
    const k = ctx.store.randomKey(ctx.random());
    if (k) out.bulk(k);
    else out.nil();
  },
  select(args, out) {
    if (args.length !== 2) return out.error(wrongArity('select'));
    const db = parseInt64(args[1]!);
    if (db === undefined) return out.error(NOT_INTEGER);
    if (db !== 0) return out.error('ERR DB index is out of range');
    out.ok();
  },
  hello(_args, out) {
    // RESP3 is not spoken; clients (redis-cli, libraries) fall back to RESP2 on this error, as with Redis 5.
    out.error('NOPROTO this guest speaks RESP2 only');
  },
  quit(_args, out) {
    out.ok();
    return Next.CLOSE;
  },
  command(args, out) {
    const sub = args.length > 1 ? lower(args[1]!) : '';
    if (sub === 'count') return out.integer(supportedCommands.length);
    out.arrayHeader(0); // COMMAND, COMMAND DOCS, COMMAND INFO: an empty table is enough for clients
  },
  config(args, out, ctx) {
    const sub = args.length > 1 ? lower(args[1]!) : '';
    if (sub !== 'get') return out.error(`ERR CONFIG ${sub.toUpperCase() || '(none)'} is not supported by the simulated guest`);
    if (args.length < 3) return out.error(wrongArity('config|get'));
    const table = configTable(ctx);
    const pairs: [string, string][] = [];
    for (let i = 2; i < args.length; i++) {
      const re = globToRegExp(args[i]!.toString('latin1'));
      for (const [k, v] of Object.entries(table)) if (re.test(k) && !pairs.some((p) => p[0] === k)) pairs.push([k, v]);
    }
    out.arrayHeader(pairs.length * 2);
    for (const [k, v] of pairs) {
      out.bulkString(k);
      out.bulkString(v);
    }
  },
  info(args, out, ctx) {
    out.bulkString(info(ctx, args.length > 1 ? lower(args[1]!) : undefined));
  },
  client(args, out, _ctx, connection) {
    const sub = args.length > 1 ? lower(args[1]!) : '';
    if (sub === 'setname' || sub === 'setinfo') return out.ok();
    if (sub === 'getname') return out.nil();
    if (sub === 'id') return out.integer(connection);
    out.error(`ERR unknown subcommand '${sub}' for CLIENT`);
  },
};
handlers.flushdb = handlers.flushall!;

/**
 * Name -> handler, as a Map so a command named like an Object.prototype member ("constructor", "__proto__")
 * is just unknown. Upper-case names are entered too: clients send either, and most send one of the two.
 */
const table = new Map<string, Handler>();
for (const [name, h] of Object.entries(handlers)) {
  table.set(name, h);
  table.set(name.toUpperCase(), h);
}

/** Runs one command, appending its reply to `out`. */
export function execute(args: Buffer[], out: ReplyWriter, ctx: ServiceContext, connection: number): Next {
  const name = args[0]!.toString('latin1');
  const h = table.get(name) ?? table.get(name.toLowerCase());
  if (!h) {
    out.error(`ERR unknown command '${args[0]!.toString('utf8').slice(0, 128)}'`);
    return Next.CONTINUE;
  }
  return h(args, out, ctx, connection) ?? Next.CONTINUE;
}

export const supportedCommands: readonly string[] = Object.keys(handlers).sort();
