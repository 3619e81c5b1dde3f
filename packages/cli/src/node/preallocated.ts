import { preallocateMemory } from '@colo/domain';
import type { Logger } from 'pino';

/**
 * guest.prealloc for one secondary process: the guest memory committed before the node dials (preallocateMemory),
 * logged with its size and the time it took, then handed once to the guest the synchronisation creates, if that
 * guest has the configured size (the primary decides the size; a mismatch leaves the memory unused, with a warn).
 * Rejects with the DomainError of preallocateMemory (DOMAIN_MEMORY_UNAVAILABLE when the host cannot give it).
 */
export async function preallocateGuestMemory(bytes: number, logger: Logger): Promise<(guestBytes: number) => SharedArrayBuffer | undefined> {
  const p = await preallocateMemory(bytes);
  logger.info({ bytes: p.memory.byteLength, seconds: Number(p.seconds.toFixed(3)) }, 'guest memory preallocated');
  let memory: SharedArrayBuffer | undefined = p.memory;
  return (guestBytes) => {
    const taken = memory;
    memory = undefined;
    if (taken && taken.byteLength !== guestBytes) {
      logger.warn({ preallocated: taken.byteLength, guest: guestBytes }, "the primary's guest is not guest.memory in size: the preallocated memory goes unused");
      return undefined;
    }
    return taken;
  };
}
