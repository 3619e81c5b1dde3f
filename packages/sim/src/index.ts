/**
 * @colo/sim: the pair under deterministic simulation (docs/simulation.md). runSimulation runs one seed;
 * runSeeds many, with the failing ones' replay commands and shrunk fault schedules.
 */
export { runSimulation, faultsFor, modeFor, FAULT_KINDS, HOSTS, type Fault, type FaultKind, type RunOptions, type RunResult } from './world.js';
export { SimClock, SIM_EPOCH_MS } from './clock.js';
export { SimNetwork, SimLinkEnd } from './network.js';
export { SimArbiter, type ArbiterDecision } from './arbiter.js';
export { Rng } from './rng.js';
export { runSeeds, shrink, replayCommand, type Failure, type SeedsOptions, type SeedsSummary } from './seeds.js';
