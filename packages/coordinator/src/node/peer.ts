import type { LinkError, PeerLink } from '../transport/index.js';

/**
 * The other node of the pair, as this node reaches it: its links by channel (the replication link, the output
 * proxy's link) and one "lost" event. The links of one peer fail together: whichever ends first, or a drop for a
 * reason found elsewhere (a proxy that sent garbage, a secondary that never synchronised), loses the peer, closes
 * every other link of it and tells the listeners once.
 */
export class Peer {
  readonly nodeId: string;
  private readonly links = new Map<string, PeerLink>();
  private readonly lostListeners = new Set<(reason: string, error: LinkError | null) => void>();
  private lostReason: string | undefined;

  constructor(nodeId: string) {
    this.nodeId = nodeId;
  }

  get lost(): boolean {
    return this.lostReason !== undefined;
  }

  /** The peer's link on `channel`, while it has one. */
  link(channel: string): PeerLink | undefined {
    return this.links.get(channel);
  }

  /** A link of this peer (one per channel); a peer already lost closes it at once. */
  add(link: PeerLink): void {
    const channel = link.peerHello.channel;
    if (this.lostReason !== undefined) {
      link.close(this.lostReason);
      return;
    }
    const replaced = this.links.get(channel);
    this.links.set(channel, link);
    replaced?.close(`a newer ${channel} link replaced it`);
    link.onClose((error) => {
      if (this.links.get(channel) !== link) return;
      this.lose(error ? `the ${channel} link ended: ${error.message}` : `the ${channel} link was closed`, error);
    });
  }

  /** Called once, when the peer is lost (at once if it already is). Returns an unsubscribe function. */
  onLost(cb: (reason: string, error: LinkError | null) => void): () => void {
    if (this.lostReason !== undefined) {
      const reason = this.lostReason;
      queueMicrotask(() => cb(reason, null));
      return () => {};
    }
    this.lostListeners.add(cb);
    return () => this.lostListeners.delete(cb);
  }

  /** The channels this peer has a link on now (none once it is lost). */
  get channels(): string[] {
    return [...this.links.keys()];
  }

  /** Loses the peer for a reason found outside its links: every link closes. */
  drop(reason: string): void {
    this.lose(reason, null);
  }

  private lose(reason: string, error: LinkError | null): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    for (const l of this.links.values()) l.close(reason);
    this.links.clear();
    const listeners = [...this.lostListeners];
    this.lostListeners.clear();
    for (const cb of listeners) cb(reason, error);
  }
}
