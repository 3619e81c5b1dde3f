import { ColoControl, LibxcType, LibxlType, OPTIONAL_RECORD_FLAG } from './types.js';

function invert<T extends Record<string, number>>(o: T): Map<number, keyof T & string> {
  return new Map(Object.entries(o).map(([k, v]) => [v, k as keyof T & string]));
}

const libxlNames = invert(LibxlType);
const libxcNames = invert(LibxcType);
const coloNames = invert(ColoControl);

/** A record type's name in its layer, for messages and summaries: 'PAGE_DATA', 'OPTIONAL(0x80000001)', 'UNKNOWN(0x42)'. */
export function recordTypeName(layer: 'libxl' | 'libxc', type: number): string {
  const name = (layer === 'libxl' ? libxlNames : libxcNames).get(type);
  if (name) return name;
  const hex = '0x' + (type >>> 0).toString(16);
  return type >>> 0 >= OPTIONAL_RECORD_FLAG ? `OPTIONAL(${hex})` : `UNKNOWN(${hex})`;
}

/** A COLO control id's name ('SVM_READY'), or 'UNKNOWN(n)'. */
export function coloControlName(id: number): string {
  return coloNames.get(id) ?? `UNKNOWN(${id})`;
}
