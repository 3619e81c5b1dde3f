import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';

/**
 * This project's extensions, each used only when both sides offered its name in their hello (never with a plain
 * Xen peer). On the replication stream each is an OPTIONAL record (type >= 0x80000000, which a reader may skip);
 * docs/colo-handshake.md describes them. INPUT_WATERMARK is the proxy link's: DELIVERED frames
 * (docs/output-rules.md).
 */
export const Extension = {
  HEARTBEAT: 'heartbeat',
  CHECKPOINT_ACK: 'checkpoint-ack',
  EPOCH: 'epoch',
  GUEST_IDENTITY: 'guest-identity',
  INPUT_WATERMARK: 'input-watermark',
  /** Changed pages as deltas against the secondary's copy (PAGE_DELTA, page-delta.ts); replication.compression. */
  PAGE_DELTA: 'page-delta',
} as const;
export const ALL_EXTENSIONS: readonly string[] = Object.values(Extension);

/** libxl layer, main stream, right after the libxl header: what guest follows (so the secondary can host it). */
export const GUEST_IDENTITY_RECORD = 0x80000c01;
/** Back channel, after each complete checkpoint the secondary applied: u64 checkpoint index on this link. */
export const CHECKPOINT_ACK_RECORD = 0x80000c02;

export interface GuestIdentity {
  uuid: string;
  name: string;
  pageCount: number;
}

export function encodeGuestIdentity(id: GuestIdentity): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ uuid: id.uuid, name: id.name, pageCount: id.pageCount }));
}

export function decodeGuestIdentity(body: Uint8Array): GuestIdentity {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (e) {
    throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, 'guest identity record is not UTF-8 JSON', { cause: e });
  }
  const o = v as Partial<GuestIdentity> | null;
  if (
    !o ||
    typeof o.uuid !== 'string' ||
    typeof o.name !== 'string' ||
    typeof o.pageCount !== 'number' ||
    !Number.isSafeInteger(o.pageCount) ||
    o.pageCount <= 0
  ) {
    throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, 'guest identity record lacks uuid, name or a positive pageCount');
  }
  return { uuid: o.uuid, name: o.name, pageCount: o.pageCount };
}

export function encodeAckBody(index: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(index), true);
  return b;
}

export function decodeAckBody(body: Uint8Array): number {
  if (body.length !== 8) {
    throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, `checkpoint ACK body is ${body.length} bytes, expected 8`);
  }
  const v = new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, 'checkpoint ACK index too large');
  return Number(v);
}
