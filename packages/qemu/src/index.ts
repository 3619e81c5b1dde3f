export { QemuError, QemuErrorCode } from './errors.js';
export { QmpClient, type QmpEvent } from './qmp.js';
export { QemuMachine, sweepLeftovers, tcpProbe, type Accelerator, type QemuExit, type QemuMachineOptions, type RunState } from './machine.js';
export { changedPages, loadDeviceState, readGuestRam, saveDeviceState, writeGuestPages } from './checkpoint.js';
export { QemuDomain, type QemuDomainOptions } from './domain.js';
export { defaultScanThreads, RamMirror, unionPfns, type RamMirrorOptions } from './ram-mirror.js';
