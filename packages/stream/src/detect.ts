import { isXlMagic } from './headers.js';
import type { StreamKind } from './types.js';

/** How many leading bytes detectKind() wants to see (fewer only at the end of a short input). */
export const DETECT_BYTES = 32;

/**
 * Guesses a stream's kind from its first bytes: the xl magic, the libxl ident "LibxlFmt", the libxc marker
 * (eight 0xFF bytes); anything else is taken for a header-less back channel (whose decoder then judges it).
 */
export function detectKind(head: Uint8Array): StreamKind {
  if (head.length >= DETECT_BYTES && isXlMagic(head)) return 'xl';
  if (head.length >= 8) {
    if (String.fromCharCode(...head.subarray(0, 8)) === 'LibxlFmt') return 'libxl';
    if (head.subarray(0, 8).every((b) => b === 0xff)) return 'libxc';
  }
  return 'back-channel';
}
