import type { Domain } from '@colo/domain';
import type { Logger } from 'pino';
import type { Arbiter } from '../arbiter/arbiter.js';
import type { GuestIdentity } from '../engine/extensions.js';
import type { CheckpointOptions } from '../defaults.js';
import type { NodeRole, ReplicationMode } from '../statechart/types.js';
import type { Channel, HeartbeatOptions, LinkSecurity, PeerLink, PeerNetwork } from '../transport/index.js';

/**
 * A replication node's options. Sections and names are the settings' own (docs/configuration.md): setting
 * `checkpoint.max_interval` is `checkpoint.maxIntervalMs` here, and every default is NODE_DEFAULTS at the same path.
 */
export interface ColoNodeOptions {
  nodeId: string;
  /** The role the node starts in. A secondary that takes over becomes a primary. */
  role: NodeRole;
  mode: ReplicationMode;
  /** Primary: the guest to protect (already created and running). */
  domain?: Domain;
  /**
   * Secondary: creates the guest the primary describes (identity from the guest-identity extension, or
   * undefined when the primary does not send it: then the factory must know the size from its own config).
   * The returned guest is suspended before any page is written into it.
   */
  hostGuest?: (identity: GuestIdentity | undefined) => Domain;
  replication: {
    /** Where a primary listens for its secondary (also used by a secondary once it is promoted). */
    listen?: { host: string; port: number };
    /** Secondary: the primary's ws:// or wss:// URL. */
    peer?: string;
    /**
     * Primary: the most bytes per second its main stream may send to the secondary (initial synchronisation and
     * checkpoints alike), as QEMU's max-bandwidth. Default: no limit.
     */
    maxBandwidth?: number;
    /** The largest WebSocket message accepted from the peer on the replication link (default NODE_DEFAULTS.replication). */
    maxFrameBytes?: number;
    /** Offer page deltas (the page-delta extension; default true): false offers whole pages only, as Xen's PAGE_DATA. */
    compression?: boolean;
  };
  security: LinkSecurity;
  /** Heartbeat of the peer's links (default NODE_DEFAULTS.heartbeat). */
  heartbeat?: HeartbeatOptions;
  /**
   * Checkpoint intervals, per-phase timeouts and the initial synchronisation's pre-copy limits (default
   * NODE_DEFAULTS.checkpoint). compareTimeoutMs acts in the output proxy (ProtectedNode): a node without one has no
   * output to compare.
   */
  checkpoint?: Partial<CheckpointOptions>;
  remus?: {
    /**
     * Remus primary only: checkpoint into nothing (Xen's `xl remus -b`). Every checkpoint step runs and its stream
     * is dropped; output is released at once; the node never reports itself protected and records nothing with
     * the arbiter. For measuring what protection would cost a workload (docs/operations.md).
     */
    blackhole?: boolean;
  };
  /** Split-brain arbiter (default: `none`, which always grants; see docs/architecture.md). */
  arbiter?: Arbiter;
  /** Epoch to start at (a restarted node passes the highest epoch it persisted). Default 0. */
  epoch?: number;
  /**
   * Extensions this node offers in its hello (default: all of this project's, less page deltas without
   * replication.compression). [] talks plain Xen.
   */
  extensions?: readonly string[];
  /** Largest record accepted on the main stream (default 128 MiB, Xen's). */
  maxRecordLength?: number;
  /** Longest wait to reach the primary (secondary), default 10 s. */
  connectTimeoutMs?: number;
  /**
   * Channels besides 'replication' that the peer's links also carry (the output proxy's 'proxy' channel), with
   * the extensions this node offers on each. A secondary dials them before its replication link; a primary accepts
   * them from a secondary whose hello passes the same checks (others are refused). The links of one peer are lost
   * together (the 'peerLost' event).
   */
  sideChannels?: readonly { channel: Exclude<Channel, 'replication'>; extensions: readonly string[] }[];
  /** Receives each side channel's link as it is established (both roles). */
  onSideLink?: (link: PeerLink) => void;
  /**
   * Secondary: how long to keep retrying a primary that is not reachable yet at start (refused, timed out), every
   * second, so that hosts may start in any order; an authentication failure is not retried. Default 60 s.
   */
  startRetryMs?: number;
  /** Where the replication link comes from (default wsNetwork: WebSocket over TCP); a simulation passes its own. */
  network?: PeerNetwork;
  logger?: Logger;
}
