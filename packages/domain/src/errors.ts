/**
 * Every failure of the domain layer that a caller can act on is a DomainError with a stable `code`. Codec
 * failures while reading an image stay StreamErrors (their codes are the codec's); everything about what the
 * records mean for a guest (page count, device state, wrong state for an operation) is a DomainError.
 */
export const DomainErrorCode = {
  /** An option passed to the guest is out of range (memory size, dirty rate, ...). */
  BAD_OPTIONS: 'DOMAIN_BAD_OPTIONS',
  /** A pfn outside 0 .. pageCount-1. */
  BAD_PFN: 'DOMAIN_BAD_PFN',
  /** writePages() data is not pfns.length whole pages. */
  BAD_PAGE_DATA: 'DOMAIN_BAD_PAGE_DATA',
  /** The operation needs a suspended guest (hypervisor page writes after the guest ran, saving an image). */
  NOT_SUSPENDED: 'DOMAIN_NOT_SUSPENDED',
  /** The domain was destroyed. */
  DESTROYED: 'DOMAIN_DESTROYED',
  /**
   * The guest is gone: the hypervisor process that ran it ended or stopped answering (a QEMU that crashed or
   * hangs). A node whose guest is lost stops acting, so that its peer takes over; it never asks to go on alone.
   */
  GUEST_LOST: 'DOMAIN_GUEST_LOST',
  /** A vCPU context (HVM_CONTEXT) blob this guest cannot load. */
  BAD_VCPU_CONTEXT: 'DOMAIN_BAD_VCPU_CONTEXT',
  /** A device state (EMULATOR_CONTEXT) blob this guest cannot load. */
  BAD_DEVICE_STATE: 'DOMAIN_BAD_DEVICE_STATE',
  /** An image's pages do not match its guest's page count (missing pages, pages beyond the end). */
  IMAGE_PAGE_COUNT_MISMATCH: 'DOMAIN_IMAGE_PAGE_COUNT_MISMATCH',
  /** An image lacks a record a guest needs (HVM_CONTEXT, EMULATOR_CONTEXT, ...). */
  IMAGE_INCOMPLETE: 'DOMAIN_IMAGE_INCOMPLETE',
  /** An image's pages do not hold a valid simulated-guest store (superblock missing or for another layout). */
  IMAGE_BAD_MEMORY: 'DOMAIN_IMAGE_BAD_MEMORY',
  /** An image holds a record a simulated HVM guest cannot use (PV records, a checkpointed stream's records). */
  IMAGE_UNSUPPORTED: 'DOMAIN_IMAGE_UNSUPPORTED',
  /** A memory staging used after it was adopted or discarded. */
  STAGING_SPENT: 'DOMAIN_STAGING_SPENT',
  /** The helper thread that faults a staging's memory in did not finish a chunk in time (never expected). */
  STAGING_STALLED: 'DOMAIN_STAGING_STALLED',
  /** The host could not give the memory asked for (preallocateMemory). */
  MEMORY_UNAVAILABLE: 'DOMAIN_MEMORY_UNAVAILABLE',
} as const;
export type DomainErrorCode = (typeof DomainErrorCode)[keyof typeof DomainErrorCode];

export class DomainError extends Error {
  override readonly name: string = 'DomainError';
  readonly code: DomainErrorCode;
  constructor(code: DomainErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${message} (${code})`, options);
    this.code = code;
  }
}

export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}
