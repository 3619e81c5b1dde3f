import { encodeLibxcDomainHeader, encodeLibxcImageHeader, encodeLibxlHeader, encodeRecord, GuestType } from '@colo/stream';

/** The start of an HVM main stream up to STATIC_DATA_END: what precedes a first checkpoint's pages. */
export function streamHead(): Buffer {
  return Buffer.concat([
    encodeLibxlHeader(),
    encodeRecord({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }),
    encodeLibxcImageHeader(),
    encodeLibxcDomainHeader({ guestType: GuestType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 }),
    encodeRecord({ layer: 'libxc', kind: 'STATIC_DATA_END' }),
  ]);
}
