/**
 * The authenticated WebSocket transport between colo nodes: one PeerLink per channel, mutual PSK (or mTLS)
 * authentication and a hello before any stream byte, ping/pong heartbeats, send-side and receive-side
 * backpressure. docs/transport.md describes the wire protocol and the choices behind the defaults.
 * Fault injection for tests lives in ./faults.ts and is deliberately not exported here.
 */
export { LinkError, LinkErrorCode, isLinkError } from './errors.js';
export { PROTOCOL_VERSION, CHANNELS, isLinkRefusal, negotiateExtensions } from './hello.js';
export type { Channel, Hello, LinkRefusal } from './hello.js';
export { DEFAULT_HEARTBEAT } from './heartbeat.js';
export type { HeartbeatOptions } from './heartbeat.js';
export type { DataListenerOptions, LinkSecurity, PeerLink } from './peer-link.js';
export type { ReadRingStats } from './read-ring.js';
export { listenForPeers } from './listener.js';
export type { ListenOptions, PeerServer } from './listener.js';
export { connectToPeer } from './dialer.js';
export type { ConnectOptions } from './dialer.js';
export { wsNetwork, type PeerNetwork } from './network.js';
export { MIN_PSK_BYTES } from './psk.js';
export { DEFAULT_HIGH_WATER_MARK, MAX_FRAME_BYTES } from './ws-link.js';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_PAYLOAD,
} from './options.js';
