/**
 * Everything the package's modules export, for the package's own tests: its index (src/index.ts) carries only the
 * public API, and a test of an internal (a statechart, the engine, the proxy's pieces) reaches it through here.
 */
export * from '../src/errors.js';
export * from '../src/defaults.js';
export * from '../src/epoch.js';
export * from '../src/arbiter/index.js';
export * from '../src/statechart/index.js';
export * from '../src/transport/index.js';
export * from '../src/engine/index.js';
export * from '../src/node/index.js';
export * from '../src/proxy/index.js';
export * from '../src/runtime/protected-node.js';
export * from '../src/observability/logger.js';
export * from '../src/observability/metrics.js';
export * from '../src/admin/server.js';
