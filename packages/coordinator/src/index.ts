/**
 * @colo/coordinator's public API: what `colo` (the CLI), the benches and a driver for another hypervisor need to
 * run, observe and test a protected node. The statecharts, the checkpoint engine, the proxy's pieces and the
 * transport's internals stay inside (the package's tests reach them through test/internals.ts).
 */

// A protected node: the replication pair's member with its client service, admin API and metrics.
export { ProtectedNode, type ProtectedNodeOptions, type ProtectedNodeStatus } from './runtime/protected-node.js';
// The replication node alone (no service): for drivers and benches that bring their own client path.
export { ColoNode, type ColoNodeOptions, type NodeStatus } from './node/index.js';
// What a node keeps across its restarts, and the role it takes at start from it and the arbiter (node.role auto).
export { NodeStateFile, nodeStatePath, readNodeState, type NodeState } from './runtime/node-state.js';
export { chooseStartRole, claimPair, decideStartRole, type Claim, type StartDecision, type StartRoleOptions, type StartWhy } from './runtime/start-role.js';
export { NODE_DEFAULTS, type CheckpointOptions, type OutputOptions } from './defaults.js';
export type { CheckpointReason, NodeRole, ReplicationMode } from './statechart/types.js';
export type { CheckpointMeasurement, CheckpointPhases } from './engine/measurement.js';
export { ALL_EXTENSIONS, Extension } from './engine/extensions.js';
export { isLinkRefusal, negotiateExtensions } from './transport/index.js';

// The output rule on a primary, for a driver (or a simulation) that brings its own client path: input in, output
// released only as the protection mode and the arbiter allow (docs/output-rules.md).
export { PrimaryProxy, type PrimaryProxyOptions } from './proxy/primary-proxy.js';

// Errors, each with a stable code.
export { CoordinatorError, CoordinatorErrorCode, isCoordinatorError } from './errors.js';
export { LinkError, LinkErrorCode, isLinkError } from './transport/errors.js';

// Who decides, when the two nodes lose each other, which one acts alone.
export {
  ArbiterError,
  ArbiterErrorCode,
  EtcdArbiter,
  LocalArbiter,
  MemoryArbiter,
  NoArbiter,
  PAIR_HOLDER,
  startLocalArbiterServer,
  type Arbiter,
  type ArbiterKind,
  type EpochExpectation,
  type EpochRecord,
  type EtcdArbiterOptions,
  type LocalArbiterOptions,
  type LocalArbiterServer,
  type SwapResult,
} from './arbiter/index.js';

// The authenticated links between two nodes (channels, hello, heartbeats, backpressure).
export {
  connectToPeer,
  listenForPeers,
  wsNetwork,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type ConnectOptions,
  type DataListenerOptions,
  type HeartbeatOptions,
  type Hello,
  type LinkSecurity,
  type ListenOptions,
  type PeerLink,
  type PeerNetwork,
  type PeerServer,
} from './transport/index.js';

export { createLogger, type Logger } from './observability/logger.js';
