export type { Arbiter } from './arbiter.js';
export { NoArbiter, noArbiter } from './none.js';
