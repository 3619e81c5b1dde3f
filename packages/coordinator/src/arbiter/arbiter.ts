/**
 * Split-brain protection. A node may act as the active side (primary) only while it holds the pair's lease in
 * an arbiter that both nodes can reach (etcd later). The interface is async and lease-shaped so that an
 * etcd-backed implementation (lease + transaction on a key holding nodeId/epoch) drops in.
 */
export interface Arbiter {
  /** Human name for logs and status ('none', 'etcd'). */
  readonly kind: string;
  /**
   * Asks for the lease as `nodeId` at `epoch`. Resolves true when granted; false when another node holds it or
   * the arbiter knows a higher epoch. Rejects only when the arbiter cannot be reached.
   */
  acquire(nodeId: string, epoch: number): Promise<boolean>;
  /** Keeps a granted lease alive; resolves false when it was lost in the meantime. */
  renew(): Promise<boolean>;
  /** Gives the lease up (stepping down, stopping). */
  release(): Promise<void>;
  /** Called once if a held lease is lost (expired, taken over): the node must stop acting as primary. */
  onLost(listener: (reason: string) => void): () => void;
}
