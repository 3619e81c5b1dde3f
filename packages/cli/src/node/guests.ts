import { readFile } from 'node:fs/promises';
import { restoreImage, SimulatedGuest, type Domain } from '@colo/domain';
import { QemuDomain, type QemuDomainOptions } from '@colo/qemu';
import type { NodeConfig } from '../config/load.js';

/** The guest a node protects, as guest.kind says: the embedded simulated guest or a QEMU virtual machine. */

function qemuOptions(config: NodeConfig): QemuDomainOptions {
  const q = config.guest.qemu!;
  return { kernel: q.kernel, initrd: q.initrd, accel: q.accel, qemuBinary: q.binary, forward: { hostPort: q.forward.port, guestPort: q.servicePort }, name: config.node.id };
}

/** Told once if a guest that is a separate process (QEMU) ends under the node: the node must stop. */
export type GuestLost = (why: string) => void;

/** A primary's guest, running (a QEMU guest has booted and its service answers). */
export async function primaryGuest(config: NodeConfig, lost: GuestLost): Promise<Domain> {
  if (config.guest.qemu) {
    const d = await QemuDomain.boot({ ...qemuOptions(config), memoryBytes: config.guest.memoryBytes });
    d.onLost(lost);
    return d;
  }
  const guest = config.guest.image
    ? await restoreImage(await readFile(config.guest.image))
    : new SimulatedGuest({ name: config.node.id, memoryBytes: config.guest.memoryBytes, backgroundDirtyPagesPerSecond: config.guest.dirtyRate });
  if (guest.state === 'suspended') await guest.resume();
  return guest;
}

/** A secondary's guest of `pageCount` pages (the primary's size), suspended until a takeover resumes it. */
export function standbyGuest(
  config: NodeConfig,
  pageCount: number | undefined,
  preallocated: (bytes: number) => SharedArrayBuffer | undefined,
  lost: GuestLost,
): Domain {
  const memoryBytes = pageCount !== undefined ? pageCount * 4096 : config.guest.memoryBytes;
  if (config.guest.qemu) {
    const d = QemuDomain.standby({ ...qemuOptions(config), pageCount: memoryBytes / 4096 });
    d.onLost(lost);
    return d;
  }
  return new SimulatedGuest({
    name: config.node.id,
    memoryBytes,
    backgroundDirtyPagesPerSecond: config.guest.dirtyRate,
    startSuspended: true,
    preallocated: preallocated(memoryBytes),
  });
}
