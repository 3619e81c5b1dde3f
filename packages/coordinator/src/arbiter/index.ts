export { PAIR_HOLDER, matchesExpectation } from './arbiter.js';
export type { Arbiter, ArbiterKind, EpochExpectation, EpochRecord, SwapResult } from './arbiter.js';
export { ArbiterError, ArbiterErrorCode } from './errors.js';
export { MemoryArbiter, NoArbiter, noArbiter } from './none.js';
export { LocalArbiter, startLocalArbiterServer, type LocalArbiterOptions, type LocalArbiterServer } from './local.js';
export { EtcdArbiter, type EtcdArbiterOptions } from './etcd.js';
