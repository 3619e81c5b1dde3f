import { EtcdArbiter, LocalArbiter, NoArbiter, type Arbiter, type createLogger } from '@colo/coordinator';
import type { NodeConfig } from '../config/load.js';
import { isLoopback } from '../config/addresses.js';

/** The arbiter a node's configuration names (arbiter.kind), with the warning `none` owes a two-host pair. */
export function arbiterFor(config: NodeConfig, logger: ReturnType<typeof createLogger>): Arbiter {
  const a = config.arbiter;
  if (a.kind === 'local') return new LocalArbiter({ socketPath: a.socketPath, timeoutMs: a.timeoutMs });
  if (a.kind === 'etcd') return new EtcdArbiter({ endpoints: a.endpoints, pair: a.pair, tls: a.tls, auth: a.auth, timeoutMs: a.timeoutMs });
  const remote = [config.replication.listen.host, config.replication.peer ? new URL(config.replication.peer).hostname : undefined].filter(
    (h): h is string => h !== undefined && !isLoopback(h),
  );
  if (remote.length > 0) {
    logger.warn(
      { arbiter: 'none', addresses: remote },
      'arbiter.kind is none and the peer may be on another host: if the two nodes lose each other (a partition, a long ' +
        'freeze) both act alone and acknowledged writes can be lost (split brain); set arbiter.kind (docs/operations.md)',
    );
  }
  return new NoArbiter();
}
