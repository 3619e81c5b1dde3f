import { SimulatedGuest, type SimulatedGuestOptions } from '@colo/domain';

/** A guest with an output recorder: every reply chunk per connection, and which connections the guest closed. */
export function recordedGuest(opts: SimulatedGuestOptions = {}) {
  const guest = new SimulatedGuest({ memoryBytes: 1024 * 1024, ...opts });
  const output = new Map<number, Buffer[]>();
  const closed = new Set<number>();
  guest.onOutput((id, bytes) => {
    if (bytes === null) closed.add(id);
    else output.set(id, [...(output.get(id) ?? []), Buffer.from(bytes)]);
  });
  const take = (id: number): string => {
    const s = Buffer.concat(output.get(id) ?? []).toString('latin1');
    output.delete(id);
    return s;
  };
  return {
    guest,
    closed,
    take,
    /** Sends `input` on connection `id` (opened if needed) and returns what the guest replied. */
    send(id: number, input: string | Uint8Array): string {
      if (!guest.openConnections.includes(id) && !closed.has(id)) guest.openConnection(id);
      guest.deliverInput(id, typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
      return take(id);
    },
  };
}

/** A RESP multibulk command. */
export function resp(...args: (string | Uint8Array)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'utf8') : Buffer.from(a);
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Pfns whose bytes differ between two page sources. */
export function differingPages(a: SimulatedGuest, b: SimulatedGuest): number[] {
  const out: number[] = [];
  for (let p = 0; p < a.pageCount; p++) if (!Buffer.from(a.page(p)).equals(b.page(p))) out.push(p);
  return out;
}

/** A snapshot of every page, to compare with later. */
export function snapshot(g: SimulatedGuest): Buffer[] {
  const pages: Buffer[] = [];
  for (let p = 0; p < g.pageCount; p++) pages.push(Buffer.from(g.page(p)));
  return pages;
}

export function changedSince(g: SimulatedGuest, before: Buffer[]): number[] {
  const out: number[] = [];
  for (let p = 0; p < g.pageCount; p++) if (!before[p]!.equals(g.page(p))) out.push(p);
  return out;
}
