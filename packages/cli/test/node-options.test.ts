import { describe, expect, test } from 'vitest';
import { NODE_DEFAULTS } from '@colo/coordinator';
import { loadConfig } from '../src/config/load.js';
import { SETTINGS, type Setting } from '../src/config/schema.js';
import { nodeOptions } from '../src/node/node-options.js';

/**
 * A setting keeps its name from the YAML file to the option where it acts (issue 22: before, checkpoint.max_interval
 * was timings.coloMaxIntervalMs, checkpoint.compare_timeout was output.compareTimeoutMs, remus.blackhole was
 * blackhole, replication.compression an extensions list): the schema names each setting's option, the option's
 * name is the setting's (camelCase, a duration ending in Ms), its default is NODE_DEFAULTS at that path, and a
 * configured value arrives there.
 */
const mapped = SETTINGS.filter((s): s is Setting & { option: string } => s.option !== undefined);

function at(tree: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], tree);
}

/** The option name a setting's path gives: same section, key in camelCase, Ms after a duration, Bytes after max_frame. */
function optionName(s: Setting): string {
  const [section, key] = s.path.split('.') as [string, string];
  const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return `${section}.${camel}${s.type === 'duration' ? 'Ms' : s.path === 'replication.max_frame' ? 'Bytes' : ''}`;
}

/** A valid value for each setting that is not its default. */
function otherValue(s: Setting): string {
  const d = s.default;
  switch (s.type) {
    case 'duration': return `${Number(at(NODE_DEFAULTS, s.option!)) * 3 + 1}ms`;
    case 'bytes': return d === undefined ? '3MiB' : `${Number(at(NODE_DEFAULTS, s.option!)) * 2}`;
    case 'int': return String(Number(d) + 3);
    case 'bool': return String(!d);
    default: throw new Error(`no other value for ${s.path}`);
  }
}

/** otherValue's text as the option's value. */
function parsed(s: Setting, text: string): number | boolean {
  if (s.type === 'bool') return text === 'true';
  if (text.endsWith('MiB')) return Number(text.slice(0, -3)) * 1024 * 1024;
  return Number(text.replace(/ms$/, ''));
}

describe('settings and the node\'s options', () => {
  test('every library-backed section of the settings names its options, by the same names', () => {
    const sections = new Set(['replication', 'heartbeat', 'checkpoint', 'output', 'remus']);
    const unmapped = SETTINGS.filter((s) => s.option === undefined && sections.has(s.path.split('.')[0]!) && !/^replication\.(listen|peer|psk|psk_file|tls_cert|tls_key|tls_ca|allow_cleartext)$/.test(s.path));
    expect(unmapped.map((s) => s.path)).toEqual([]);
    for (const s of mapped) expect(s.option, s.path).toBe(optionName(s));
    expect(mapped.length).toBeGreaterThanOrEqual(16);
  });

  test('every default is NODE_DEFAULTS at the option\'s path (only max_bandwidth has none: no limit)', () => {
    const none = mapped.filter((s) => at(NODE_DEFAULTS, s.option) === undefined).map((s) => s.path);
    expect(none).toEqual(['replication.max_bandwidth']);
    const parsed = loadConfig({});
    for (const s of mapped) {
      if (s.path.startsWith('arbiter.')) continue;
      expect(at(nodeOptions({ ...parsed, node: { ...parsed.node, role: 'primary' } }), s.option), s.path).toEqual(at(NODE_DEFAULTS, s.option));
    }
  });

  test('a configured value of every such setting arrives at its option', () => {
    const flags: Record<string, string> = { 'node.role': 'primary', 'node.mode': 'remus', 'arbiter.kind': 'local', 'arbiter.endpoints': '/tmp/colo-test.sock' };
    for (const s of mapped) flags[s.path] = otherValue(s);
    const config = loadConfig({ flags });
    const options = nodeOptions(config);
    const fromDefaults = loadConfig({ flags: { 'node.role': 'primary', 'node.mode': 'remus', 'arbiter.kind': 'local', 'arbiter.endpoints': '/tmp/colo-test.sock' } });
    for (const s of mapped) {
      // The arbiter is built from its section (arbiterFor): its options are LocalArbiterOptions / EtcdArbiterOptions.
      const value = s.path.startsWith('arbiter.') ? at(config, s.option) : at(options, s.option);
      expect(value, s.path).toEqual(parsed(s, flags[s.path]!));
      expect(value, s.path).not.toEqual(at(s.path.startsWith('arbiter.') ? fromDefaults : nodeOptions(fromDefaults), s.option));
    }
    expect(options.checkpoint).toEqual({
      remusIntervalMs: 601,
      maxIntervalMs: 15_001,
      compareTimeoutMs: 301,
      phaseTimeoutMs: 30_001,
      stallTimeoutMs: 30_001,
      precopyMaxRounds: 8,
      precopyMinDirty: 53,
    });
    expect(options.remus).toEqual({ blackhole: true });
    expect(options.replication).toMatchObject({ compression: false, maxBandwidth: 3 * 1024 * 1024, maxFrameBytes: 32 * 1024 * 1024 });
  });
});
