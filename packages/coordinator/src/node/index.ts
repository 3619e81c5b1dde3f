export { ColoNode, type NodeStatus, type ColoNodeEvents } from './colo-node.js';
export type { ColoNodeOptions } from './options.js';
export { stateName, type Transition } from './transitions.js';
