import { PAGE_SIZE } from '@colo/stream';
import { DomainError, DomainErrorCode } from './errors.js';
import { Prefaulter } from './prefault.js';

/** Guest memory committed ahead of the writes that will fill it (see preallocateMemory). */
export interface PreallocatedMemory {
  readonly memory: SharedArrayBuffer;
  /** How long faulting it in took. */
  readonly seconds: number;
}

/**
 * Allocates `bytes` of zeroed memory and faults every page of it in (on a helper thread, so the caller's event
 * loop keeps running), for a secondary to receive its initial synchronisation into (guest.prealloc; QEMU's
 * prealloc=on for the same reason). Two things follow:
 * - the memory is committed when the node starts: a host that cannot give it fails the start, loudly (an
 *   overcommitted host would otherwise kill the secondary in the middle of the synchronisation, or later);
 * - the synchronisation runs at the speed of the stream, not of first-touch page faults (on the virtual machines
 *   this project is measured on those cost 2-10 s per GiB, more than the transfer itself).
 * The faulting itself costs as much as before; it moves from the synchronisation (while the primary streams) to
 * before the secondary dials.
 */
export async function preallocateMemory(bytes: number): Promise<PreallocatedMemory> {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % PAGE_SIZE !== 0) {
    throw new DomainError(DomainErrorCode.BAD_OPTIONS, `preallocated memory must be a positive multiple of ${PAGE_SIZE} bytes, got ${bytes}`);
  }
  const t0 = performance.now();
  let memory: SharedArrayBuffer;
  try {
    memory = new SharedArrayBuffer(bytes);
  } catch (e) {
    throw new DomainError(DomainErrorCode.MEMORY_UNAVAILABLE, `could not allocate ${bytes} bytes of guest memory: ${(e as Error).message}`, { cause: e });
  }
  await new Prefaulter(memory).faultAllUnwritten();
  return { memory, seconds: (performance.now() - t0) / 1000 };
}
