/** Connection ids are the coordinator's: assigned by the primary's service listener, never reused by a node. */
export type ConnectionId = number;

export type InputKind = 'open' | 'data' | 'close';

/**
 * One client event in the pair's total input order. `seq` counts from 1 on a primary; both guests see the
 * same events in the same seq order. `bytes` is present for 'data' only.
 */
export interface InputEvent {
  seq: number;
  conn: ConnectionId;
  kind: InputKind;
  bytes?: Uint8Array;
}

/** Output a guest sent to a client: bytes, or null when the guest closed the connection. */
export type OutputBytes = Uint8Array | null;

/** Why the proxy asks the node for a checkpoint (a subset of the node's checkpoint reasons). */
export type ProxyCheckpointReason = 'miscompare' | 'stale' | 'output_bound';

/** How a secondary protects the primary: compare outputs (COLO) or hold them until acknowledged (Remus). */
export type ProtectionMode = 'colo' | 'remus';

/**
 * The proxy channel between the two nodes. The transport's PeerLink satisfies it: send() keeps call order and
 * resolves when the link can take more; onData() delivers the peer's bytes in order (frame boundaries need
 * not be preserved: the proxy's own framing finds message boundaries).
 */
export interface ProxyLink {
  send(bytes: Uint8Array): Promise<void>;
  onData(listener: (bytes: Uint8Array) => void): () => void;
}
