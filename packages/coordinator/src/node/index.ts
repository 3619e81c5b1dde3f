export { ColoNode, type NodeStatus, type ColoNodeEvents } from './colo-node.js';
export type { ColoNodeOptions } from './options.js';
export { stateName, type Transition } from './transitions.js';
export { Arbitration, type ArbitrationObserver, type ArbitrationStatus, type Decision, type DecisionPurpose } from './arbitration.js';
export { Peer } from './peer.js';
export { nodeStatus, isProtectedState, type StatusFacts } from './status.js';
