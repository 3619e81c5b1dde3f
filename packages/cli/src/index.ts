export { main } from './main.js';
export * from './command.js';
export { NODE_HEAP_FLAGS, withNodeHeapFlags } from './runtime/node-flags.js';
