export * from './types.js';
export * from './primary.js';
export * from './secondary.js';
export * from './bind.js';
