import { DomainError, DomainErrorCode } from './errors.js';

/**
 * The simulated vCPU's context, carried in HVM_CONTEXT (which must not be empty). The simulated CPU's only
 * architectural state is a retired-command counter (the analogue of an instruction counter): it is
 * informational and never affects output. Little-endian: magic u32 "CVCP", version u32 = 1, retired u64.
 */
export const VCPU_MAGIC = 0x50435643; // "CVCP"

export function encodeVcpuContext(retired: bigint): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(VCPU_MAGIC, 0);
  b.writeUInt32LE(1, 4);
  b.writeBigUInt64LE(retired, 8);
  return b;
}

export function decodeVcpuContext(blob: Uint8Array): bigint {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  if (b.length !== 16 || b.readUInt32LE(0) !== VCPU_MAGIC || b.readUInt32LE(4) !== 1) {
    throw new DomainError(DomainErrorCode.BAD_VCPU_CONTEXT, `HVM_CONTEXT (${b.length} bytes) is not a simulated vCPU context`);
  }
  return b.readBigUInt64LE(8);
}
