import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { envName, flagName, SETTINGS, type Setting } from './schema.js';
import { MAX_FRAME_BYTES, type CheckpointOptions, type OutputOptions } from '@colo/coordinator';
import { parseBytes, parseDurationMs, parseHostPort } from './units.js';
import { isLoopback } from './addresses.js';

/** A node's configuration after merging file < environment < flags and validating every field. */
export interface NodeConfig {
  node: { id: string; role?: 'auto' | 'primary' | 'secondary'; mode: 'colo' | 'remus'; stateDir?: string };
  guest: {
    memoryBytes: number;
    dirtyRate: number;
    prealloc: boolean;
    image?: string;
    /** qemu: a QEMU virtual machine instead of the simulated guest. */
    qemu?: { kernel: string; initrd: string; accel: 'kvm' | 'tcg'; binary: string; forward: { host: string; port: number }; servicePort: number };
  };
  replication: {
    listen: { host: string; port: number };
    peer?: string;
    psk?: Uint8Array;
    tls?: { cert: Buffer; key: Buffer; ca: Buffer };
    maxFrameBytes: number;
    /** Bytes per second the primary's main stream may send; undefined: no limit. */
    maxBandwidth?: number;
    /** Offer page deltas (the page-delta extension). */
    compression: boolean;
    /** Links without TLS off loopback, by the operator's choice (replication.allow_cleartext): warned about. */
    cleartextOffLoopback: boolean;
  };
  heartbeat: { intervalMs: number; timeoutMs: number };
  /** The node's own option sections, by the same names (ProtectedNodeOptions). */
  checkpoint: CheckpointOptions;
  output: OutputOptions;
  /** Remus: checkpoint into nothing (a primary with no secondary, never protected). */
  remus: { blackhole: boolean };
  service: { listen: { host: string; port: number }; promoteHook?: string; demoteHook?: string };
  admin: { listen: { host: string; port: number }; token?: string; allowCrash: boolean; tls?: { cert: Buffer; key: Buffer }; cleartextOffLoopback: boolean };
  /** `local`: `socketPath` is the unix socket of the arbiter process. */
  arbiter:
    | { kind: 'none' }
    | { kind: 'local'; socketPath: string; timeoutMs: number }
    | {
        kind: 'etcd';
        endpoints: string[];
        pair: string;
        timeoutMs: number;
        tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
        auth?: { username: string; password: string };
      };
  log: { level: string };
}

export const ConfigErrorCode = {
  INVALID: 'CONFIG_INVALID',
  UNKNOWN_FIELD: 'CONFIG_UNKNOWN_FIELD',
  MISSING: 'CONFIG_MISSING',
  FILE: 'CONFIG_FILE',
  /** Secrets or guest data would cross the network in clear, and the settings do not say the operator accepts it. */
  INSECURE: 'CONFIG_INSECURE',
} as const;
export type ConfigErrorCode = (typeof ConfigErrorCode)[keyof typeof ConfigErrorCode];

/** A configuration problem: names the field, where its value came from, and how to fix it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code: ConfigErrorCode;
  readonly field: string;
  constructor(code: ConfigErrorCode, field: string, message: string) {
    super(`${field}: ${message}`);
    this.code = code;
    this.field = field;
  }
}

export interface ConfigSources {
  /** Path of a YAML file (optional). */
  file?: string;
  /** Environment (process.env); COLO_* variables override the file. */
  env?: Record<string, string | undefined>;
  /** Values from flags, by setting path (e.g. 'replication.peer'); override everything. */
  flags?: Record<string, string>;
}

type Raw = Map<string, { value: unknown; from: string }>;

function flattenFile(file: string): Raw {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(ConfigErrorCode.FILE, file, `cannot read the config file (${(e as NodeJS.ErrnoException).code ?? e}); check the path given to --config`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? ` at line ${e.linePos[0].line}` : '';
    throw new ConfigError(ConfigErrorCode.FILE, file, `not valid YAML${where}: ${(e as Error).message.split('\n')[0]}`);
  }
  const raw: Raw = new Map();
  if (doc === null || doc === undefined) return raw;
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(ConfigErrorCode.FILE, file, 'the top level must be a mapping of sections (node:, guest:, replication:, ...)');
  }
  const known = new Set(SETTINGS.map((s) => s.path));
  const sections = new Set(SETTINGS.map((s) => s.path.split('.')[0]));
  for (const [section, body] of Object.entries(doc as Record<string, unknown>)) {
    if (!sections.has(section)) {
      throw new ConfigError(ConfigErrorCode.UNKNOWN_FIELD, section, `unknown section in ${file}; known sections: ${[...sections].join(', ')}`);
    }
    if (body === null) continue;
    if (typeof body !== 'object' || Array.isArray(body)) {
      throw new ConfigError(ConfigErrorCode.INVALID, section, `must be a mapping of settings in ${file}`);
    }
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      const path = `${section}.${key}`;
      if (!known.has(path)) {
        const near = SETTINGS.filter((s) => s.path.startsWith(section + '.')).map((s) => s.path.split('.')[1]);
        throw new ConfigError(ConfigErrorCode.UNKNOWN_FIELD, path, `unknown setting in ${file}; ${section} has: ${near.join(', ')}`);
      }
      raw.set(path, { value, from: file });
    }
  }
  return raw;
}

function describe(s: Setting): string {
  switch (s.type) {
    case 'enum': return `one of ${s.values!.join(', ')}`;
    case 'duration': return 'a duration such as 250ms, 2s or 1m';
    case 'bytes': return 'a size such as 64KiB, 256MiB or 1GiB';
    case 'int': return 'a whole number >= 0';
    case 'hostport': return 'HOST:PORT, e.g. 127.0.0.1:7800 or [::1]:7800';
    case 'url': return 'a ws:// or wss:// URL, e.g. ws://host-a:7800';
    case 'bool': return 'true or false';
    default: return 'a string';
  }
}

function convert(s: Setting, value: unknown, from: string): unknown {
  const bad = (): never => {
    throw new ConfigError(ConfigErrorCode.INVALID, s.path, `${JSON.stringify(value)} (from ${from}) is not valid: expected ${describe(s)}`);
  };
  switch (s.type) {
    case 'string':
    case 'file':
      if (typeof value !== 'string' && typeof value !== 'number') bad();
      if (String(value).length === 0) bad();
      return String(value);
    case 'enum':
      if (!s.values!.includes(String(value))) bad();
      return String(value);
    case 'duration': return parseDurationMs(value) ?? bad();
    case 'bytes': return parseBytes(value) ?? bad();
    case 'int': {
      const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) bad();
      return n;
    }
    case 'hostport': return parseHostPort(value) ?? bad();
    case 'url':
      if (typeof value !== 'string' || !/^wss?:\/\/[^\s/]+(:\d+)?\/?$/.test(value)) bad();
      return value;
    case 'bool':
      if (value === true || value === 'true') return true;
      if (value === false || value === 'false') return false;
      return bad();
  }
}

function readSecretFile(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new ConfigError(ConfigErrorCode.FILE, field, `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? e}); check the path and its permissions`);
  }
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(ConfigErrorCode.FILE, field, `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
}

/** Merges and validates; throws ConfigError naming the first bad field. */
export function loadConfig(sources: ConfigSources): NodeConfig {
  const raw: Raw = sources.file ? flattenFile(sources.file) : new Map();
  const env = sources.env ?? {};
  for (const s of SETTINGS) {
    const v = env[envName(s.path)];
    if (v !== undefined && v !== '') raw.set(s.path, { value: v, from: `environment ${envName(s.path)}` });
  }
  for (const [path, value] of Object.entries(sources.flags ?? {})) {
    if (!SETTINGS.some((s) => s.path === path)) throw new ConfigError(ConfigErrorCode.UNKNOWN_FIELD, path, 'unknown setting');
    raw.set(path, { value, from: `flag --${flagName(path)}` });
  }
  const v = new Map<string, unknown>();
  for (const s of SETTINGS) {
    const r = raw.get(s.path);
    if (r !== undefined) v.set(s.path, convert(s, r.value, r.from));
    else if (s.default !== undefined) v.set(s.path, convert(s, s.default, 'default'));
  }
  const get = <T>(path: string) => v.get(path) as T;

  const memory = get<number>('guest.memory');
  if (memory < 4096 * 16 || memory % 4096 !== 0) {
    throw new ConfigError(ConfigErrorCode.INVALID, 'guest.memory', `${memory} bytes: must be a multiple of 4 KiB and at least 64 KiB`);
  }
  const hb = { intervalMs: get<number>('heartbeat.interval'), timeoutMs: get<number>('heartbeat.timeout') };
  if (hb.intervalMs <= 0) throw new ConfigError(ConfigErrorCode.INVALID, 'heartbeat.interval', 'must be greater than 0');
  if (hb.timeoutMs < 2 * hb.intervalMs) {
    throw new ConfigError(ConfigErrorCode.INVALID, 'heartbeat.timeout', `${hb.timeoutMs}ms must be at least twice heartbeat.interval (${hb.intervalMs}ms), or one late heartbeat causes a failover`);
  }

  let psk: Uint8Array | undefined;
  const pskText = get<string | undefined>('replication.psk') ?? (get<string | undefined>('replication.psk_file') ? readSecretFile(get<string>('replication.psk_file'), 'replication.psk_file') : undefined);
  if (pskText !== undefined) {
    if (pskText.length < 16) throw new ConfigError(ConfigErrorCode.INVALID, 'replication.psk', 'the pre-shared key is shorter than 16 characters; generate one with `head -c 32 /dev/urandom | base64`');
    psk = new TextEncoder().encode(pskText);
  }
  const tlsParts = ['replication.tls_cert', 'replication.tls_key', 'replication.tls_ca'].map((p) => get<string | undefined>(p));
  let tls: NodeConfig['replication']['tls'];
  if (tlsParts.some((p) => p !== undefined)) {
    const missing = ['tls_cert', 'tls_key', 'tls_ca'].filter((_, i) => tlsParts[i] === undefined);
    if (missing.length > 0) throw new ConfigError(ConfigErrorCode.MISSING, `replication.${missing[0]}`, 'mutual TLS needs tls_cert, tls_key and tls_ca together');
    tls = { cert: readPem(tlsParts[0]!, 'replication.tls_cert'), key: readPem(tlsParts[1]!, 'replication.tls_key'), ca: readPem(tlsParts[2]!, 'replication.tls_ca') };
  }
  const token = get<string | undefined>('admin.token') ?? (get<string | undefined>('admin.token_file') ? readSecretFile(get<string>('admin.token_file'), 'admin.token_file') : undefined);
  if (token !== undefined && token.length < 16) {
    throw new ConfigError(ConfigErrorCode.INVALID, 'admin.token', 'the admin token is shorter than 16 characters; generate one with `head -c 24 /dev/urandom | base64`');
  }
  const adminTlsParts = [get<string | undefined>('admin.tls_cert'), get<string | undefined>('admin.tls_key')];
  if ((adminTlsParts[0] === undefined) !== (adminTlsParts[1] === undefined)) {
    throw new ConfigError(ConfigErrorCode.MISSING, adminTlsParts[0] ? 'admin.tls_key' : 'admin.tls_cert', 'HTTPS for the admin API needs admin.tls_cert and admin.tls_key together');
  }
  const adminTls = adminTlsParts[0] ? { cert: readPem(adminTlsParts[0], 'admin.tls_cert'), key: readPem(adminTlsParts[1]!, 'admin.tls_key') } : undefined;
  const cleartext = cleartextRules(get, tls !== undefined, token !== undefined, adminTls !== undefined);
  const nodeId = get<string>('node.id') === 'hostname' ? hostname() : get<string>('node.id');
  const arbiter = arbiterConfig(get);

  return {
    node: { id: nodeId, role: get('node.role'), mode: get('node.mode'), stateDir: get('node.state_dir') },
    guest: { memoryBytes: memory, dirtyRate: get('guest.dirty_rate'), prealloc: get('guest.prealloc'), image: get('guest.image'), qemu: qemuGuest(get, memory) },
    replication: { listen: get('replication.listen'), peer: get('replication.peer'), psk, tls, maxFrameBytes: maxFrame(get), maxBandwidth: maxBandwidth(get), compression: get('replication.compression'), cleartextOffLoopback: cleartext.replication },
    heartbeat: hb,
    checkpoint: {
      remusIntervalMs: get('checkpoint.remus_interval'),
      maxIntervalMs: get('checkpoint.max_interval'),
      compareTimeoutMs: get('checkpoint.compare_timeout'),
      phaseTimeoutMs: get('checkpoint.phase_timeout'),
      stallTimeoutMs: get('checkpoint.stall_timeout'),
      precopyMaxRounds: get('checkpoint.precopy_max_rounds'),
      precopyMinDirty: get('checkpoint.precopy_min_dirty'),
    },
    output: { maxHeldPerConnection: get('output.max_held_per_connection'), maxHeldTotal: get('output.max_held_total') },
    remus: { blackhole: blackhole(get) },
    service: { listen: get('service.listen'), promoteHook: get('service.promote_hook'), demoteHook: get('service.demote_hook') },
    admin: { listen: get('admin.listen'), token, allowCrash: get('admin.allow_crash'), tls: adminTls, cleartextOffLoopback: cleartext.admin },
    arbiter,
    log: { level: get('log.level') },
  };
}

/**
 * Security by default off loopback: links that leave the host carry guest memory and client data, and the admin
 * API's bearer token; without TLS they cross the network in clear (a pre-shared key authenticates, it does not
 * encrypt). Such a configuration is refused unless the operator says so (allow_cleartext), and then warned about
 * at every start. Returns which of the two run in clear off loopback by that choice.
 */
function cleartextRules(get: <T>(path: string) => T, linkTls: boolean, adminToken: boolean, adminTls: boolean): { replication: boolean; admin: boolean } {
  const listen = get<{ host: string }>('replication.listen').host;
  const peer = get<string | undefined>('replication.peer');
  const offLoopback = !isLoopback(listen) || (peer !== undefined && !isLoopback(new URL(peer).hostname));
  let replication = false;
  if (offLoopback && !linkTls && !get<boolean>('remus.blackhole')) {
    if (!get<boolean>('replication.allow_cleartext')) {
      throw new ConfigError(
        ConfigErrorCode.INSECURE,
        'replication.tls_cert',
        `the links leave this host (${!isLoopback(listen) ? `listen ${listen}` : `peer ${peer}`}) and would carry guest memory and client data in clear: set replication.tls_cert, tls_key and tls_ca (\`colo certs\` makes them; the peer URL becomes wss://), or replication.allow_cleartext: true to accept that`,
      );
    }
    replication = true;
  }
  const admin = adminToken && !adminTls && !isLoopback(get<{ host: string }>('admin.listen').host);
  if (admin && !get<boolean>('admin.allow_cleartext')) {
    throw new ConfigError(
      ConfigErrorCode.INSECURE,
      'admin.tls_cert',
      `the admin API listens on ${get<{ host: string }>('admin.listen').host}, off loopback, and its bearer token would cross the network in clear: set admin.tls_cert and admin.tls_key (HTTPS), or admin.allow_cleartext: true to accept that`,
    );
  }
  return { replication, admin };
}

function qemuGuest(get: <T>(path: string) => T, memory: number): NodeConfig['guest']['qemu'] {
  if (get<string>('guest.kind') !== 'qemu') return undefined;
  const [kernel, initrd] = [get<string | undefined>('guest.kernel'), get<string | undefined>('guest.initrd')];
  if (!kernel) throw new ConfigError(ConfigErrorCode.MISSING, 'guest.kernel', 'a qemu guest needs a kernel (scripts/guest.sh builds .tools/guest/vmlinuz)');
  if (!initrd) throw new ConfigError(ConfigErrorCode.MISSING, 'guest.initrd', 'a qemu guest needs an initramfs (.tools/guest/initramfs.img)');
  if (get('guest.image')) throw new ConfigError(ConfigErrorCode.INVALID, 'guest.image', 'a qemu guest boots from guest.kernel and guest.initrd, not from a simulated guest\'s image');
  if (memory % (2 * 1024 * 1024) !== 0 || memory < 64 * 1024 * 1024) throw new ConfigError(ConfigErrorCode.INVALID, 'guest.memory', `${memory} bytes: a qemu guest needs a multiple of 2 MiB, at least 64 MiB`);
  if (get('node.mode') !== 'remus') {
    throw new ConfigError(
      ConfigErrorCode.INVALID,
      'node.mode',
      'a qemu guest is protected in remus mode only: COLO needs a running secondary VM whose state is replaced at every checkpoint, which QEMU 7.2 cannot take from outside (docs/domain.md)',
    );
  }
  return { kernel, initrd, accel: get('guest.accel'), binary: get('guest.qemu'), forward: get('guest.forward'), servicePort: get('guest.service_port') };
}

function maxFrame(get: <T>(path: string) => T): number {
  const v = get<number>('replication.max_frame');
  // Every link sends messages of up to 1 MiB (a PAGE_DATA record of 255 pages fits one): a smaller limit refuses them.
  if (v < MAX_FRAME_BYTES) throw new ConfigError(ConfigErrorCode.INVALID, 'replication.max_frame', `${v} bytes: at least 1MiB (the links send messages of up to 1 MiB)`);
  return v;
}

function maxBandwidth(get: <T>(path: string) => T): number | undefined {
  const v = get<number | undefined>('replication.max_bandwidth');
  if (v === undefined) return undefined;
  // Below one 1 MiB record a second, a checkpoint of a few hundred pages would stall the guest for seconds.
  if (v < 1024 * 1024) throw new ConfigError(ConfigErrorCode.INVALID, 'replication.max_bandwidth', `${v} bytes per second: at least 1MiB (a 1 Gbit/s link is 125MB)`);
  return v;
}

function blackhole(get: <T>(path: string) => T): boolean {
  if (!get<boolean>('remus.blackhole')) return false;
  if (get('node.mode') !== 'remus') throw new ConfigError(ConfigErrorCode.INVALID, 'remus.blackhole', 'blackhole mode checkpoints a Remus primary into nothing: set node.mode to remus');
  if (get('node.role') === 'secondary' || get('node.role') === 'auto') throw new ConfigError(ConfigErrorCode.INVALID, 'remus.blackhole', 'blackhole mode is for a primary: it has no secondary');
  return true;
}

function arbiterConfig(get: <T>(path: string) => T): NodeConfig['arbiter'] {
  const kind = get<'none' | 'local' | 'etcd'>('arbiter.kind');
  const endpoints = get<string | undefined>('arbiter.endpoints');
  const timeoutMs = get<number>('arbiter.timeout');
  if (timeoutMs <= 0) throw new ConfigError(ConfigErrorCode.INVALID, 'arbiter.timeout', 'must be greater than 0');
  if (kind === 'none') return { kind };
  if (!endpoints) {
    const example = kind === 'local' ? 'unix:/run/colo/arbiter.sock' : 'http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379';
    throw new ConfigError(ConfigErrorCode.MISSING, 'arbiter.endpoints', `the ${kind} arbiter needs arbiter.endpoints, e.g. ${example}`);
  }
  if (kind === 'local') {
    const socketPath = endpoints.replace(/^unix:(\/\/)?/, '');
    if (!socketPath.startsWith('/') && !socketPath.startsWith('.')) {
      throw new ConfigError(ConfigErrorCode.INVALID, 'arbiter.endpoints', `${JSON.stringify(endpoints)}: the local arbiter is a unix socket: give its path (unix:/run/colo/arbiter.sock)`);
    }
    return { kind, socketPath, timeoutMs };
  }
  const urls = endpoints.split(',').map((e) => e.trim()).filter((e) => e.length > 0);
  const ca = get<string | undefined>('arbiter.tls_ca');
  for (const u of urls) {
    if (!/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(u)) {
      throw new ConfigError(ConfigErrorCode.INVALID, 'arbiter.endpoints', `${JSON.stringify(u)} is not an etcd client URL: expected http(s)://HOST:PORT, comma separated`);
    }
    if (u.startsWith('https:') !== (ca !== undefined)) {
      throw new ConfigError(ConfigErrorCode.INVALID, 'arbiter.tls_ca', ca ? `${u}: with arbiter.tls_ca every endpoint must be https://` : `${u} is https://: set arbiter.tls_ca to the CA that signed the members' certificates`);
    }
  }
  const pair = get<string>('arbiter.pair');
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(pair)) throw new ConfigError(ConfigErrorCode.INVALID, 'arbiter.pair', `${JSON.stringify(pair)}: use letters, digits, '.', '_' or '-'`);
  const [cert, key] = [get<string | undefined>('arbiter.tls_cert'), get<string | undefined>('arbiter.tls_key')];
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError(ConfigErrorCode.MISSING, cert ? 'arbiter.tls_key' : 'arbiter.tls_cert', 'a client certificate needs both arbiter.tls_cert and arbiter.tls_key');
  if (cert && !ca) throw new ConfigError(ConfigErrorCode.MISSING, 'arbiter.tls_ca', 'a client certificate needs arbiter.tls_ca (and https:// endpoints)');
  const tls = ca ? { ca: readPem(ca, 'arbiter.tls_ca'), cert: cert ? readPem(cert, 'arbiter.tls_cert') : undefined, key: key ? readPem(key, 'arbiter.tls_key') : undefined } : undefined;
  const username = get<string | undefined>('arbiter.username');
  const password = get<string | undefined>('arbiter.password') ?? (get<string | undefined>('arbiter.password_file') ? readSecretFile(get<string>('arbiter.password_file'), 'arbiter.password_file') : undefined);
  if ((username === undefined) !== (password === undefined)) {
    throw new ConfigError(ConfigErrorCode.MISSING, username ? 'arbiter.password_file' : 'arbiter.username', 'etcd authentication needs arbiter.username and its password (arbiter.password_file)');
  }
  return { kind, endpoints: urls, pair, timeoutMs, tls, auth: username ? { username, password: password! } : undefined };
}

/** Checks what a role needs; separate so `colo pair` can fill in the peer first. */
export function requireForRole(cfg: NodeConfig): void {
  if (!cfg.node.role) throw new ConfigError(ConfigErrorCode.MISSING, 'node.role', 'set node.role to auto, primary or secondary (or use `colo primary` / `colo secondary`)');
  if (cfg.node.role === 'auto') {
    // The role comes from the arbiter's record, and either role may come out of it (replication.peer below).
    if (cfg.arbiter.kind === 'none') throw new ConfigError(ConfigErrorCode.INVALID, 'node.role', 'auto needs an arbiter to decide the role at start: set arbiter.kind to local or etcd');
    if (!cfg.node.stateDir) throw new ConfigError(ConfigErrorCode.MISSING, 'node.state_dir', 'auto needs a state directory of this node (e.g. /var/lib/colo): it tells a new pair from one whose record was lost');
  }
  if (cfg.node.role !== 'primary' && !cfg.replication.peer) {
    throw new ConfigError(ConfigErrorCode.MISSING, 'replication.peer', "a secondary needs the primary's address: set replication.peer, COLO_REPLICATION_PEER or --replication-peer ws://HOST:PORT");
  }
  // A blackhole primary has no link to authenticate.
  if (!cfg.replication.psk && !cfg.replication.tls && !cfg.remus.blackhole) {
    throw new ConfigError(ConfigErrorCode.MISSING, 'replication.psk_file', 'the replication link must be authenticated: set replication.psk_file (or COLO_REPLICATION_PSK), or mutual TLS with replication.tls_cert/tls_key/tls_ca');
  }
}

/** A copy safe to print or log: secrets replaced. */
export function redactedConfig(cfg: NodeConfig): unknown {
  return {
    ...cfg,
    replication: { ...cfg.replication, psk: cfg.replication.psk ? '[redacted]' : undefined, tls: cfg.replication.tls ? { cert: '[pem]', key: '[redacted]', ca: '[pem]' } : undefined },
    admin: { ...cfg.admin, token: cfg.admin.token ? '[redacted]' : undefined, tls: cfg.admin.tls ? { cert: '[pem]', key: '[redacted]' } : undefined },
    arbiter:
      cfg.arbiter.kind === 'etcd'
        ? {
            ...cfg.arbiter,
            tls: cfg.arbiter.tls ? { ca: '[pem]', cert: cfg.arbiter.tls.cert ? '[pem]' : undefined, key: cfg.arbiter.tls.key ? '[redacted]' : undefined } : undefined,
            auth: cfg.arbiter.auth ? { username: cfg.arbiter.auth.username, password: '[redacted]' } : undefined,
          }
        : cfg.arbiter,
  };
}

/** Maps parsed flags (--section-key value) to setting paths for loadConfig's `flags`. */
function settingFlags(values: Record<string, string | boolean | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of SETTINGS) {
    const f = values[flagName(s.path)];
    if (typeof f === 'string') out[s.path] = f;
  }
  return out;
}

/** node:util parseArgs option declarations for every setting flag. */
function settingFlagOptions(): Record<string, { type: 'string' }> {
  return Object.fromEntries(SETTINGS.map((s) => [flagName(s.path), { type: 'string' as const }]));
}

/**
 * A command's arguments that configure a node: every setting's flag (--section-key VALUE), --config FILE, and the
 * command's own `extra` options. Flags parsed into setting paths for loadConfig; a bad flag is CONFIG_INVALID.
 */
export function settingArgs(argv: string[], extra: Record<string, { type: 'string' | 'boolean' }> = {}): {
  file: string | undefined;
  flags: Record<string, string>;
  values: Record<string, string | boolean | undefined>;
} {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: { ...settingFlagOptions(), config: { type: 'string' }, ...extra }, strict: true }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new ConfigError(ConfigErrorCode.INVALID, 'flags', (e as Error).message);
  }
  return { file: values.config as string | undefined, flags: settingFlags(values), values };
}
