import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '@colo/domain';
import { StreamDecoder, encodePageData, type PageDataRecord } from '@colo/stream';
import { CoordinatorErrorCode, decodeAckBody, decodeGuestIdentity, encodeAckBody, encodeGuestIdentity, PendingCheckpoint } from '@colo/coordinator';
import { streamHead } from './stream-head.js';

function pageRecord(pfns: number[], fill: number): PageDataRecord {
  const bytes = Buffer.concat([
    streamHead(),
    encodePageData(pfns, () => new Uint8Array(4096).fill(fill)),
  ]);
  const items = new StreamDecoder({ kind: 'libxl' }).push(bytes);
  const rec = items.find((i) => i.item === 'record' && i.record.kind === 'PAGE_DATA');
  return (rec as { record: PageDataRecord }).record;
}

describe('PendingCheckpoint', () => {
  it('touches the guest only in applyTo, and then with every buffered page', () => {
    const guest = new SimulatedGuest({ memoryBytes: 64 * 4096, startSuspended: true });
    const before = guest.memoryDigest();
    const cp = new PendingCheckpoint();
    cp.addPages(pageRecord([3, 4], 0xab), guest.pageCount);
    cp.addPages(pageRecord([4], 0xcd), guest.pageCount); // sent twice: the later copy wins
    cp.setVcpuContext(guest.getVcpuContext());
    cp.libxcComplete = true;
    expect(guest.memoryDigest()).toBe(before);
    expect(cp.complete).toBe(true);
    cp.applyTo(guest);
    expect(guest.page(3)[100]).toBe(0xab);
    expect(guest.page(4)[100]).toBe(0xcd);
    guest.destroy();
  });

  it('refuses a page beyond the guest while buffering (so applying can never fail half-way)', () => {
    const cp = new PendingCheckpoint();
    expect(() => cp.addPages(pageRecord([70], 1), 64)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.GUEST_MISMATCH }));
  });
});

describe('extension records', () => {
  it('round-trip the guest identity and refuse a malformed one', () => {
    const id = { uuid: 'u-1', name: 'g', pageCount: 512 };
    expect(decodeGuestIdentity(encodeGuestIdentity(id))).toEqual(id);
    expect(() => decodeGuestIdentity(new TextEncoder().encode('{"uuid":"u"}'))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
    expect(() => decodeGuestIdentity(Uint8Array.of(0xff, 0xfe))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
  });
  it('round-trip the checkpoint ACK and refuse a wrong length', () => {
    expect(decodeAckBody(encodeAckBody(123456))).toBe(123456);
    expect(() => decodeAckBody(new Uint8Array(4))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
  });
});
