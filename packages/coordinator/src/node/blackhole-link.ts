import { Extension } from '../engine/extensions.js';
import type { LinkError } from '../transport/errors.js';
import { negotiateExtensions, PROTOCOL_VERSION, type Hello } from '../transport/hello.js';
import type { PeerLink } from '../transport/peer-link.js';

/** The blackhole's node id, as a secondary's would appear in status and logs. */
export const BLACKHOLE_PEER = 'blackhole';

/**
 * A replication link to nobody (Remus's blackhole, Xen's `xl remus -b`): every byte a primary sends is counted
 * and dropped at once, and nothing ever comes back. It negotiates no checkpoint acknowledgement, so a Remus
 * primary completes each checkpoint once its bytes are written, which here is at once: output is released as
 * if the acknowledgement had come back in no time. What is left of a checkpoint is its cost on the primary
 * (suspend, find the dirty pages, encode the records, resume), which is what blackhole mode measures. It never
 * ends by itself; close() ends it.
 */
export class BlackholeLink implements PeerLink {
  readonly localHello: Hello;
  readonly peerHello: Hello;
  readonly extensions: readonly string[];
  readonly remoteAddress = BLACKHOLE_PEER;
  readonly bufferedAmount = 0;
  readonly rttSeconds = undefined;
  /** Bytes dropped so far. */
  discarded = 0;
  private ended = false;
  private readonly closeListeners = new Set<(error: LinkError | null) => void>();

  /** `local`: the primary's hello on this link's channel (a blackhole has a replication and a proxy link). */
  constructor(local: Hello) {
    this.localHello = local;
    // Acknowledgements would wait for an answer that never comes; a heartbeat would watch a peer that is not
    // there; input watermarks would report deliveries to a guest that does not exist. Page deltas are offered:
    // their cost is part of what a blackhole measures (when the primary offers them too).
    const offered: string[] = local.channel === 'replication' ? [Extension.EPOCH, Extension.GUEST_IDENTITY, Extension.PAGE_DELTA] : [];
    this.peerHello = { protocol: PROTOCOL_VERSION, channel: local.channel, nodeId: BLACKHOLE_PEER, role: 'secondary', mode: local.mode, epoch: local.epoch, extensions: offered };
    this.extensions = negotiateExtensions(local.extensions, offered);
  }

  send(bytes: Uint8Array): Promise<void> {
    if (!this.ended) this.discarded += bytes.byteLength;
    return Promise.resolve();
  }

  sendPieces(pieces: readonly Uint8Array[]): Promise<void> {
    if (!this.ended) for (const p of pieces) this.discarded += p.byteLength;
    return Promise.resolve();
  }

  whenWritten(): Promise<void> {
    return Promise.resolve();
  }

  onData(): () => void {
    return () => {};
  }

  onClose(listener: (error: LinkError | null) => void): () => void {
    if (this.ended) queueMicrotask(() => listener(null));
    else this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    for (const l of this.closeListeners) l(null);
    this.closeListeners.clear();
  }

  pauseReceiving(): void {}
  resumeReceiving(): void {}
  onRtt(): () => void {
    return () => {};
  }
}
