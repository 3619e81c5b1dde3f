import { connectToPeer, type ConnectOptions } from './dialer.js';
import { listenForPeers, type ListenOptions, type PeerServer } from './listener.js';
import type { PeerLink } from './peer-link.js';

/**
 * Where a node's peer links come from: the only way a node reaches another. The real one is WebSocket over TCP
 * (wsNetwork); a deterministic simulation passes its own, whose links deliver on a simulated clock and fail as
 * its fault schedule says, and the node runs the same code either way.
 */
export interface PeerNetwork {
  listen(opts: ListenOptions): Promise<PeerServer>;
  connect(opts: ConnectOptions): Promise<PeerLink>;
}

/** Authenticated WebSocket links over TCP (or TLS): listenForPeers and connectToPeer. */
export const wsNetwork: PeerNetwork = { listen: listenForPeers, connect: connectToPeer };
