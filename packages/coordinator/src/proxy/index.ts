export * from './errors.js';
export * from './types.js';
export * from './wire.js';
export * from './input-log.js';
export * from './comparator.js';
export * from './remus-buffer.js';
