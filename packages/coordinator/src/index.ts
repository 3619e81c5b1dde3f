export * from './errors.js';
export * from './epoch.js';
export * from './arbiter/index.js';
export * from './statechart/index.js';
export * from './transport/index.js';
