import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameBatcher } from '../../src/proxy/frame-batcher.js';
import { encodeBarrier, INPUT_HEAD_BYTES, ProxyFrameDecoder, writeInputHead, type ProxyMessage } from '../../src/proxy/wire.js';
import type { InputEvent, ProxyLink } from '../../src/proxy/types.js';

/** A link that keeps what send() was handed (not a copy): the batcher must never write into it again. */
function capturingLink(): ProxyLink & { sent: Uint8Array[]; snapshots: Buffer[] } {
  const sent: Uint8Array[] = [];
  const snapshots: Buffer[] = [];
  return {
    sent,
    snapshots,
    send(bytes) {
      sent.push(bytes);
      snapshots.push(Buffer.from(bytes));
      return Promise.resolve();
    },
    onData: () => () => {},
  };
}

const turn = () => new Promise<void>((r) => setImmediate(r));

/** Queues an event's INPUT frame the way the primary does: head and data written into the batch. */
function queueInput(b: FrameBatcher, e: InputEvent): void {
  const n = e.kind === 'data' ? e.bytes!.byteLength : 0;
  const at = b.reserve(INPUT_HEAD_BYTES + n);
  writeInputHead(b.buffer, at, e);
  if (n > 0) b.buffer.set(e.bytes!, at + INPUT_HEAD_BYTES);
}

function decodeAll(msgs: Uint8Array[]): ProxyMessage[] {
  const d = new ProxyFrameDecoder();
  const out = msgs.flatMap((m) => d.push(m));
  d.end();
  return out;
}

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : undefined);

describe('FrameBatcher', () => {
  it('sends the frames of one event-loop turn as one link message, in order', async () => {
    const link = capturingLink();
    const b = new FrameBatcher(link);
    queueInput(b, { seq: 1, conn: 4, kind: 'open' });
    queueInput(b, { seq: 2, conn: 4, kind: 'data', bytes: Buffer.from('PING\r\n') });
    b.push(encodeBarrier(1, 2));
    expect(link.sent).toHaveLength(0);
    await turn();
    expect(link.sent).toHaveLength(1);
    const msgs = decodeAll(link.sent);
    expect(msgs.map((m) => m.type)).toEqual(['input', 'input', 'barrier']);
    expect(msgs[1]!.type === 'input' && hex(msgs[1]!.event.bytes)).toBe(hex(Buffer.from('PING\r\n')));
  });

  it('loses nothing, keeps order and never rewrites a sent batch, across arenas and oversize frames', async () => {
    await fc.assert(
      fc.asyncProperty(
        // Turns of frames; sizes up to 300 KiB force fresh arenas (256 KiB each) and frames larger than one.
        fc.array(fc.array(fc.oneof(fc.nat({ max: 64 }), fc.nat({ max: 40_000 }), fc.constant(300_000)), { maxLength: 8 }), { minLength: 1, maxLength: 12 }),
        async (turns) => {
          const link = capturingLink();
          const b = new FrameBatcher(link);
          const expected: InputEvent[] = [];
          let seq = 0;
          for (const sizes of turns) {
            for (const size of sizes) {
              const e: InputEvent = { seq: ++seq, conn: seq % 7, kind: 'data', bytes: Buffer.alloc(size, seq & 0xff) };
              expected.push(e);
              queueInput(b, e);
            }
            await turn();
          }
          const got = decodeAll(link.sent);
          expect(got.map((m) => (m.type === 'input' ? [m.event.seq, m.event.conn, m.event.bytes?.byteLength] : m.type))).toEqual(
            expected.map((e) => [e.seq, e.conn, e.bytes!.byteLength]),
          );
          for (const [i, m] of got.entries()) expect(m.type === 'input' && m.event.bytes!.every((x) => x === (expected[i]!.seq & 0xff))).toBe(true);
          // What was handed to the link still holds what it held when it was sent.
          for (const [i, s] of link.sent.entries()) expect(Buffer.compare(Buffer.from(s), link.snapshots[i]!)).toBe(0);
          // One message per turn (the default cap, 256 KiB, lets a big frame go in a message of its own).
          expect(link.sent.length).toBeGreaterThanOrEqual(turns.filter((t) => t.length > 0).length);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('moves a half-filled batch whole when the arena runs out under it', async () => {
    const link = capturingLink();
    const b = new FrameBatcher(link);
    let seq = 0;
    // 150 KB per turn: the second turn's batch starts at 150 KB of a 256 KiB arena and outgrows it mid-batch.
    for (let t = 0; t < 3; t++) {
      for (let i = 0; i < 5; i++) queueInput(b, { seq: ++seq, conn: 1, kind: 'data', bytes: Buffer.alloc(30_000, seq) });
      await turn();
    }
    expect(link.sent).toHaveLength(3);
    const got = decodeAll(link.sent);
    expect(got.map((m) => (m.type === 'input' && m.event.bytes!.every((x) => x === m.event.seq) ? m.event.seq : -1))).toEqual(
      Array.from({ length: 15 }, (_, i) => i + 1),
    );
  });

  it('sends a batch at once when the next frame would take it past maxBatchBytes', async () => {
    const link = capturingLink();
    const b = new FrameBatcher(link, 100);
    queueInput(b, { seq: 1, conn: 1, kind: 'data', bytes: Buffer.alloc(50, 1) }); // 68 bytes
    expect(link.sent).toHaveLength(0);
    queueInput(b, { seq: 2, conn: 1, kind: 'data', bytes: Buffer.alloc(50, 2) }); // would make 136
    expect(link.sent).toHaveLength(1);
    b.push(Buffer.alloc(120, 0)); // a whole frame past the cap goes on its own, at once
    expect(link.sent).toHaveLength(3);
    await turn();
    expect(link.sent.map((m) => m.byteLength)).toEqual([68, 68, 120]);
  });

  it('gives back the room of a frame that could not be written', async () => {
    const link = capturingLink();
    const b = new FrameBatcher(link);
    queueInput(b, { seq: 1, conn: 1, kind: 'open' });
    const at = b.reserve(INPUT_HEAD_BYTES);
    expect(() => writeInputHead(b.buffer, at, { seq: 2, conn: 2 ** 32, kind: 'open' })).toThrow(RangeError);
    b.unreserve(at);
    queueInput(b, { seq: 2, conn: 2, kind: 'open' });
    await turn();
    expect(decodeAll(link.sent).map((m) => (m.type === 'input' ? m.event.seq : -1))).toEqual([1, 2]);
  });

  it('lets beforeSend end every batch with a frame of its own, without sending early or sending an empty batch', async () => {
    const link = capturingLink();
    let calls = 0;
    const b: FrameBatcher = new FrameBatcher(link, 100, () => {
      calls++;
      const at = b.reserve(60); // past maxBatchBytes on purpose: it must not make the batch leave early
      b.buffer.set(encodeBarrier(calls, calls), at);
      b.unreserve(at + encodeBarrier(0, 0).byteLength);
    });
    queueInput(b, { seq: 1, conn: 1, kind: 'data', bytes: Buffer.alloc(50, 1) });
    await turn();
    b.flush(); // nothing queued: no batch, no call
    queueInput(b, { seq: 2, conn: 1, kind: 'open' });
    b.flush();
    expect(calls).toBe(2);
    expect(link.sent).toHaveLength(2);
    expect(decodeAll(link.sent).map((m) => (m.type === 'input' ? `i${m.event.seq}` : m.type === 'barrier' ? `b${m.checkpoint}` : m.type))).toEqual(['i1', 'b1', 'i2', 'b2']);
    await turn();
    expect(link.sent).toHaveLength(2);
  });

  it('sends nothing after discard(), and reserve() still gives room to write', async () => {
    const link = capturingLink();
    const b = new FrameBatcher(link);
    queueInput(b, { seq: 1, conn: 1, kind: 'open' });
    b.discard();
    queueInput(b, { seq: 2, conn: 1, kind: 'data', bytes: Buffer.alloc(300_000, 1) });
    b.push(encodeBarrier(1, 1));
    b.flush();
    await turn();
    expect(link.sent).toHaveLength(0);
  });
});
