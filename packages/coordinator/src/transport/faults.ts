/**
 * Fault injection for tests only (the replication engineer's failover tests use it): make a link behave
 * like a hung peer or a vanished one. Not exported from the package index; import it from
 * '@colo/coordinator/src/transport/faults.js' relative paths in tests, or from this module directly.
 */
import type { PeerLink } from './peer-link.js';
import { WsPeerLink } from './ws-link.js';

export interface Stall {
  /** Undo the stall: reading, pinging, answering and sending start again. */
  resume(): void;
}

function impl(link: PeerLink): WsPeerLink {
  if (!(link instanceof WsPeerLink)) throw new TypeError('fault injection works on links made by this transport only');
  return link;
}

/**
 * Freezes one end like a hung process: it stops reading (so it answers no pings), stops pinging, stops
 * sending (send() stays pending) and stops judging the peer. The OTHER end sees LINK_HEARTBEAT_TIMEOUT
 * within its timeout + interval. The stalled end notices nothing until resumed or closed.
 */
export function stallLink(link: PeerLink): Stall {
  const l = impl(link);
  l.stallForFaultInjection();
  return { resume: () => l.unstallForFaultInjection() };
}

/**
 * Drops the TCP connection at once, without a WebSocket close frame, as a crash or a reset would. The other
 * end sees LINK_CLOSED (connection dropped) or LINK_SOCKET_ERROR; this end sees LINK_SOCKET_ERROR.
 */
export function cutLink(link: PeerLink): void {
  impl(link).cutForFaultInjection();
}

/** Sends a text frame to the peer, a protocol violation: the peer must end the link with LINK_PROTOCOL. */
export function sendTextFrame(link: PeerLink, text: string): void {
  impl(link).rawSocket.send(text, { binary: false });
}
