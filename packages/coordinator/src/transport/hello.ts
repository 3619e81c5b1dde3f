import { LinkError, LinkErrorCode } from './errors.js';

/** The colo link protocol version this code speaks (the handshake, hello and framing rules). */
export const PROTOCOL_VERSION = 1;

/** A node opens one link per channel: the replication stream, and later the output proxy. */
export type Channel = 'replication' | 'proxy';
export const CHANNELS: readonly Channel[] = ['replication', 'proxy'];

/** Exchanged right after authentication, before any stream byte. */
export interface Hello {
  protocol: number;
  channel: Channel;
  nodeId: string;
  role: 'primary' | 'secondary';
  mode: 'colo' | 'remus';
  epoch: number;
  extensions: string[];
}

/** What a listener's hello callback returns to turn a peer away, e.g. for a stale epoch. */
export interface LinkRefusal {
  refuse: string;
  code: LinkErrorCode;
}

export function isLinkRefusal(x: Hello | LinkRefusal): x is LinkRefusal {
  return typeof (x as LinkRefusal).refuse === 'string';
}

/**
 * Checks a hello received from the wire field by field; anything malformed is LINK_PROTOCOL, a different
 * protocol number is LINK_VERSION_MISMATCH (checked first, so a future version with other fields is reported
 * as a version problem, not as garbage).
 */
export function parseHello(value: unknown): Hello {
  const bad = (what: string) => new LinkError(LinkErrorCode.PROTOCOL, `the peer's hello is malformed: ${what}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('not an object');
  const h = value as Record<string, unknown>;
  if (typeof h.protocol !== 'number' || !Number.isInteger(h.protocol)) throw bad('protocol is not an integer');
  if (h.protocol !== PROTOCOL_VERSION) {
    throw new LinkError(
      LinkErrorCode.VERSION_MISMATCH,
      `the peer speaks colo link protocol ${h.protocol}, this node speaks ${PROTOCOL_VERSION}; run the same colo release on both nodes`,
    );
  }
  if (!CHANNELS.includes(h.channel as Channel)) throw bad(`unknown channel ${JSON.stringify(h.channel)}`);
  if (typeof h.nodeId !== 'string' || h.nodeId.length === 0 || h.nodeId.length > 256) throw bad('nodeId');
  if (h.role !== 'primary' && h.role !== 'secondary') throw bad(`role ${JSON.stringify(h.role)}`);
  if (h.mode !== 'colo' && h.mode !== 'remus') throw bad(`mode ${JSON.stringify(h.mode)}`);
  if (typeof h.epoch !== 'number' || !Number.isSafeInteger(h.epoch) || h.epoch < 0) throw bad('epoch');
  if (
    !Array.isArray(h.extensions) ||
    h.extensions.length > 64 ||
    !h.extensions.every((e) => typeof e === 'string' && e.length > 0 && e.length <= 64)
  ) {
    throw bad('extensions');
  }
  return {
    protocol: h.protocol,
    channel: h.channel as Channel,
    nodeId: h.nodeId,
    role: h.role,
    mode: h.mode,
    epoch: h.epoch,
    extensions: [...(h.extensions as string[])],
  };
}

/** The extensions both sides offered, sorted so that both ends hold the same list. */
export function negotiateExtensions(a: readonly string[], b: readonly string[]): string[] {
  const theirs = new Set(b);
  return [...new Set(a.filter((e) => theirs.has(e)))].sort();
}
