import { DomainError, DomainErrorCode } from './errors.js';

/**
 * The simulated guest's device model state, carried in EMULATOR_CONTEXT: which connections are open and the
 * bytes of each one's half-received command, plus the guest's identity and size so a save image is
 * self-describing (Xen keeps such metadata in xenstore; Xen 4.17's verifier cannot read xenstore records with
 * data, so it lives here). Little-endian:
 *
 *   magic u32 "CDEV", version u32 = 1, pageCount u32, nameLength u32, name (UTF-8), uuidLength u32, uuid,
 *   connectionCount u32, then per connection (ascending id): id u32, pendingLength u32, pending bytes
 */
export const DEVICE_STATE_MAGIC = 0x56454443; // "CDEV"
export const DEVICE_STATE_VERSION = 1;

export interface DeviceState {
  pageCount: number;
  name: string;
  uuid: string;
  connections: { id: number; pending: Uint8Array }[];
}

export function encodeDeviceState(s: DeviceState): Uint8Array {
  const name = Buffer.from(s.name, 'utf8');
  const uuid = Buffer.from(s.uuid, 'utf8');
  let size = 16 + name.length + 4 + uuid.length + 4;
  for (const c of s.connections) size += 8 + c.pending.length;
  const out = Buffer.alloc(size);
  let at = 0;
  const u32 = (v: number) => {
    out.writeUInt32LE(v, at);
    at += 4;
  };
  u32(DEVICE_STATE_MAGIC);
  u32(DEVICE_STATE_VERSION);
  u32(s.pageCount);
  u32(name.length);
  at += name.copy(out, at);
  u32(uuid.length);
  at += uuid.copy(out, at);
  u32(s.connections.length);
  for (const c of [...s.connections].sort((a, b) => a.id - b.id)) {
    u32(c.id);
    u32(c.pending.length);
    out.set(c.pending, at);
    at += c.pending.length;
  }
  return out;
}

export function decodeDeviceState(blob: Uint8Array): DeviceState {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  let at = 0;
  const fail = (why: string): never => {
    throw new DomainError(DomainErrorCode.BAD_DEVICE_STATE, `device state (EMULATOR_CONTEXT) is not this guest's: ${why}`);
  };
  const u32 = () => {
    if (at + 4 > b.length) fail(`truncated at byte ${at}`);
    const v = b.readUInt32LE(at);
    at += 4;
    return v;
  };
  const bytes = (n: number) => {
    if (at + n > b.length) fail(`truncated at byte ${at}`);
    const v = b.subarray(at, at + n);
    at += n;
    return v;
  };
  if (u32() !== DEVICE_STATE_MAGIC) fail('bad magic');
  const version = u32();
  if (version !== DEVICE_STATE_VERSION) fail(`unsupported version ${version}`);
  const pageCount = u32();
  const name = bytes(u32()).toString('utf8');
  const uuid = bytes(u32()).toString('utf8');
  const count = u32();
  const connections: DeviceState['connections'] = [];
  const seen = new Set<number>();
  for (let i = 0; i < count; i++) {
    const id = u32();
    if (seen.has(id)) fail(`connection ${id} listed twice`);
    seen.add(id);
    connections.push({ id, pending: Buffer.from(bytes(u32())) });
  }
  if (at !== b.length) fail(`${b.length - at} trailing bytes`);
  return { pageCount, name, uuid, connections };
}
