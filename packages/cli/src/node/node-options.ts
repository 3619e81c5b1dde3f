import type { NodeRole, ProtectedNodeOptions } from '@colo/coordinator';
import type { NodeConfig } from '../config/load.js';

/** What a configuration sets of a node's options (the rest is built at run time: guest, arbiter, logger). */
export type ConfiguredOptions = Omit<ProtectedNodeOptions, 'version' | 'domain' | 'hostGuest' | 'arbiter' | 'logger'>;

/**
 * A node's options from its configuration. The sections and names are the same at both layers (setting
 * `checkpoint.max_interval` is option `checkpoint.maxIntervalMs`; the schema names the option of each setting and
 * packages/cli/test/node-options.test.ts checks that every one arrives there), so this is a selection, not a
 * reshaping.
 */
export function nodeOptions(config: NodeConfig, role: NodeRole = fixedRole(config)): ConfiguredOptions {
  const { listen, peer, maxBandwidth, maxFrameBytes, compression, psk, tls } = config.replication;
  return {
    nodeId: config.node.id,
    role,
    mode: config.node.mode,
    stateDir: config.node.stateDir,
    replication: { listen, peer, maxBandwidth, maxFrameBytes, compression },
    security: { psk, tls },
    heartbeat: config.heartbeat,
    checkpoint: config.checkpoint,
    output: config.output,
    remus: config.remus,
    service: config.service,
    admin: { listen: config.admin.listen, token: config.admin.token, allowCrash: config.admin.allowCrash, tls: config.admin.tls },
  };
}

/** node.role when the configuration fixes it; `auto` is decided at start (decideStartRole) and passed instead. */
function fixedRole(config: NodeConfig): NodeRole {
  const role = config.node.role;
  if (role === 'primary' || role === 'secondary') return role;
  throw new Error(`node.role ${role ?? '(unset)'}: the role is decided at start; pass it`);
}
