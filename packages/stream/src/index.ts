export * from './types.js';
export * from './errors.js';
export {
  encodeXlHeader,
  encodeLibxlHeader,
  encodeLibxcImageHeader,
  encodeLibxcDomainHeader,
  encodeRecord,
  encodeRecordBody,
  encodeRawRecord,
  encodePageData,
  writePageData,
  pageDataRecordPieces,
  pageDataSize,
  RECORD_HEADER_SIZE,
  XL_HEADER_SIZE,
  LIBXL_HEADER_SIZE,
  LIBXC_IMAGE_HEADER_SIZE,
  LIBXC_DOMAIN_HEADER_SIZE,
  LibxlOption,
  XlMandatoryFlag,
  type PageDataOptions,
  type ByteSink,
} from './encode.js';
export { ByteQueue } from './bytes.js';
export { StreamWriter, DEFAULT_CHUNK_SIZE, type StreamWriterOptions } from './writer.js';
export { StreamDecoder, decodeAll, decodeStream, type DecoderOptions } from './decoder.js';
export { detectKind, DETECT_BYTES } from './detect.js';
export { recordTypeName, coloControlName } from './names.js';
export { StreamSummarizer, formatEntry, formatStats, type SummaryEntry, type StreamStats } from './summary.js';
