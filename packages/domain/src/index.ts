export * from './domain.js';
export * from './errors.js';
export { SimulatedGuest, DEFAULT_MEMORY_BYTES, MAX_MEMORY_BYTES, type SimulatedGuestOptions } from './simulated-guest.js';
export { RespParser, RespProtocolError, MAX_BULK_LENGTH, MAX_INLINE_LENGTH, MAX_MULTIBULK_COUNT } from './resp-parser.js';
export { supportedCommands } from './resp-service.js';
export { decodeDeviceState, encodeDeviceState, type DeviceState } from './device-state.js';
export { planLayout, type Layout } from './layout.js';
export { RecordBatch, applyPageData, pagesWithData } from './apply.js';
export { saveImage, saveImageToBuffer, restoreImage, IMAGE_XEN_VERSION, type SaveImageOptions, type RestoreImageOptions } from './image.js';
