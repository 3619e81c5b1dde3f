import type { Arbiter } from './arbiter.js';

/**
 * The `none` arbiter always grants the lease. With it, a network partition between two healthy nodes makes
 * BOTH act as primary (split brain): the secondary cannot tell a dead primary from an unreachable one, so it
 * promotes itself while the old primary keeps serving its own clients. Epochs fence the old primary only once
 * it meets a node that saw the promotion. Use it for one-host pairs, tests and drills; use an external arbiter
 * when the two nodes are separate hosts.
 */
export class NoArbiter implements Arbiter {
  readonly kind = 'none';
  holder: { nodeId: string; epoch: number } | undefined;

  async acquire(nodeId: string, epoch: number): Promise<boolean> {
    this.holder = { nodeId, epoch };
    return true;
  }
  async renew(): Promise<boolean> {
    return this.holder !== undefined;
  }
  async release(): Promise<void> {
    this.holder = undefined;
  }
  onLost(_listener: (reason: string) => void): () => void {
    // A lease that is always granted is never lost.
    return () => {};
  }
}

export function noArbiter(): Arbiter {
  return new NoArbiter();
}
