export * from './extensions.js';
export * from './measurement.js';
export { DEFAULT_PRECOPY, PrimaryCheckpointEngine, type PrecopyLimits, type PrimaryEngineOptions } from './primary-engine.js';
export { SecondaryCheckpointEngine, type SecondaryEngineOptions, type AppliedCheckpointTiming } from './secondary-engine.js';
export { PendingCheckpoint } from './pending-checkpoint.js';
export { RecordFramer } from './framing.js';
export { unionAscending } from './pfn-set.js';
