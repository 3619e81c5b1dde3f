export * from './errors.js';
export * from './epoch.js';
export * from './arbiter/index.js';
export * from './statechart/index.js';
export * from './transport/index.js';
export * from './engine/index.js';
export * from './node/index.js';
export * from './proxy/index.js';
