import type { Domain } from '@colo/domain';
import type { ProxyLink } from '../../src/proxy/index.js';

/**
 * An in-memory proxy link pair. Sends are delivered asynchronously, in order, possibly re-split into other
 * chunk sizes (the real link is a byte stream too). cut() models a dead peer: what is not yet delivered is lost.
 */
export interface MemoryLink extends ProxyLink {
  /** Bytes sent and not yet delivered to the other end. */
  readonly inFlight: number;
}

export function linkPair(split: (n: number) => number = (n) => n): {
  a: MemoryLink;
  b: MemoryLink;
  cut: () => void;
  settle: () => Promise<void>;
} {
  let dead = false;
  const make = () => {
    const listeners = new Set<(b: Uint8Array) => void>();
    const held: Uint8Array[] = [];
    let inFlight = 0;
    const end = {
      listeners,
      held,
      receive(bytes: Uint8Array) {
        if (listeners.size === 0) held.push(bytes);
        else for (const l of [...listeners]) l(bytes);
      },
    };
    return { end, get inFlight() { return inFlight; }, add: (n: number) => (inFlight += n) };
  };
  const ea = make();
  const eb = make();
  const link = (self: ReturnType<typeof make>, peer: ReturnType<typeof make>): MemoryLink => ({
    get inFlight() {
      return self.inFlight;
    },
    send(bytes: Uint8Array): Promise<void> {
      if (dead) return Promise.reject(new Error('link cut'));
      const copy = Uint8Array.from(bytes);
      self.add(copy.byteLength);
      setImmediate(() => {
        self.add(-copy.byteLength);
        if (dead) return;
        for (let at = 0; at < copy.byteLength; ) {
          const n = Math.max(1, Math.min(copy.byteLength - at, split(copy.byteLength - at)));
          peer.end.receive(copy.subarray(at, at + n));
          at += n;
        }
      });
      return Promise.resolve();
    },
    onData(listener) {
      self.end.listeners.add(listener);
      for (const b of self.end.held.splice(0)) listener(b);
      return () => self.end.listeners.delete(listener);
    },
  });
  const a = link(ea, eb);
  const b = link(eb, ea);
  return {
    a,
    b,
    cut: () => {
      dead = true;
    },
    settle: async () => {
      // Two rounds per hop: deliveries may trigger replies that are sent on in their turn.
      for (let i = 0; i < 50 && (i < 4 || a.inFlight + b.inFlight > 0); i++) await new Promise<void>((r) => setImmediate(r));
    },
  };
}

/** The checkpoint's payload, taken from a suspended primary: every page plus vCPU and device state. */
export interface GuestState {
  pfns: number[];
  pages: Uint8Array;
  vcpu: Uint8Array;
  device: Uint8Array;
}

export function captureState(d: Domain): GuestState {
  const pfns = Array.from({ length: d.pageCount }, (_, i) => i);
  const pages = new Uint8Array(d.pageCount * 4096);
  for (const pfn of pfns) pages.set(d.page(pfn), pfn * 4096);
  return { pfns, pages, vcpu: d.getVcpuContext(), device: d.getDeviceState() };
}

/** Applies a captured state to a suspended guest, as the replication engine does at CHECKPOINT_END. */
export function applyState(d: Domain, s: GuestState): void {
  d.writePages(s.pfns, s.pages);
  d.setVcpuContext(s.vcpu);
  d.setDeviceState(s.device);
}

export function resp(...args: string[]): Uint8Array {
  return Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
}
