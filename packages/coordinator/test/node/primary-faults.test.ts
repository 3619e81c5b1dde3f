import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ColoControl, encodeRecord, StreamDecoder, type StreamRecord } from '@colo/stream';
import {
  ALL_EXTENSIONS,
  CHECKPOINT_ACK_RECORD,
  connectToPeer,
  CoordinatorErrorCode,
  encodeAckBody,
  PROTOCOL_VERSION,
  type ColoNode,
  type PeerLink,
  type ReplicationMode,
} from '../internals.js';
import { stallLink } from '../../src/transport/faults.js';
import { FAST, startPrimary, waitFor } from './pair.js';

/**
 * Fault injection against a real primary node: a scripted secondary (codec + real transport) follows the
 * handshake up to a step and then misbehaves. colo-protocol.md: the primary drops the secondary, resumes its
 * guest if it was suspended, continues unprotected, fails waiting checkpoint requests, and accepts a new one.
 */
class ScriptedSecondary {
  private readonly decoder = new StreamDecoder({ kind: 'libxl' });
  private readonly seen: StreamRecord[] = [];
  readonly link: PeerLink;
  constructor(link: PeerLink) {
    this.link = link;
    link.onData((b) => {
      for (const it of this.decoder.push(b)) if (it.item === 'record') this.seen.push(it.record);
    });
  }
  /** Waits until the main stream carried `count` records matching. */
  async until(what: string, match: (r: StreamRecord) => boolean, count = 1): Promise<void> {
    await waitFor(what, () => this.seen.filter(match).length >= count, 5000);
  }
  control(id: number): Promise<void> {
    return this.link.send(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: id }));
  }
  dirty(pfns: number[]): Promise<void> {
    return this.link.send(encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT_DIRTY_PFN_LIST', pfns }));
  }
  ack(n: number): Promise<void> {
    return this.link.send(encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: CHECKPOINT_ACK_RECORD, body: encodeAckBody(n) }));
  }
}
const isEnd = (r: StreamRecord) => r.kind === 'CHECKPOINT_END';
const isNew = (r: StreamRecord) => r.kind === 'CHECKPOINT_STATE' && r.controlId === ColoControl.NEW_CHECKPOINT;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c().catch(() => {})));
});

async function setup(mode: ReplicationMode) {
  const psk = randomBytes(32);
  const { guest, primary } = await startPrimary({ mode, pages: 512, primary: { checkpoint: { ...FAST.checkpoint, phaseTimeoutMs: 600 } } }, psk);
  const link = await connectToPeer({
    url: primary.listenUrl!,
    security: { psk },
    heartbeat: FAST.heartbeat,
    hello: { protocol: PROTOCOL_VERSION, channel: 'replication', nodeId: 'scripted-secondary', role: 'secondary', mode, epoch: 0, extensions: [...ALL_EXTENSIONS] },
  });
  cleanups.push(async () => {
    link.close();
    await primary.stop();
    guest.destroy();
  });
  return { guest, primary, s: new ScriptedSecondary(link) };
}

/** COLO first boot done by the script: READY, RESUMED after the initial CHECKPOINT_END. */
async function protect(s: ScriptedSecondary, primary: ColoNode, mode: ReplicationMode) {
  await s.until('initial checkpoint', isEnd);
  if (mode === 'colo') {
    await s.control(ColoControl.SVM_READY);
    await s.control(ColoControl.SVM_RESUMED);
  } else await s.ack(0);
  await waitFor('protected', () => primary.status().protected);
}

async function expectDropped(primary: ColoNode, guest: { state: string }, code: string) {
  await waitFor(`unprotected with ${code}`, () => primary.status().state === 'unprotected' && primary.status().lastError);
  expect(primary.status().lastError!.code).toBe(code);
  await waitFor('guest running', () => guest.state === 'running');
}

describe('a primary under a faulty secondary', () => {
  it('no READY after the initial synchronisation: phase timeout, guest resumed', async () => {
    const { guest, primary, s } = await setup('colo');
    await s.until('initial checkpoint', isEnd);
    expect(guest.state).toBe('suspended'); // COLO: the primary waits for READY suspended
    await expectDropped(primary, guest, CoordinatorErrorCode.PHASE_TIMEOUT);
  });

  it('a control_id only a primary may send: COLO_UNEXPECTED_CONTROL', async () => {
    const { guest, primary, s } = await setup('colo');
    await s.until('initial checkpoint', isEnd);
    await s.control(ColoControl.NEW_CHECKPOINT);
    await expectDropped(primary, guest, CoordinatorErrorCode.UNEXPECTED_CONTROL);
  });

  it('an unknown control_id: COLO_UNEXPECTED_CONTROL', async () => {
    const { guest, primary, s } = await setup('colo');
    await s.until('initial checkpoint', isEnd);
    await s.control(77);
    await expectDropped(primary, guest, CoordinatorErrorCode.UNEXPECTED_CONTROL);
  });

  it('READY while protected and idle: COLO_MISPLACED_RECORD', async () => {
    const { guest, primary, s } = await setup('colo');
    await protect(s, primary, 'colo');
    await s.control(ColoControl.SVM_READY);
    await expectDropped(primary, guest, CoordinatorErrorCode.MISPLACED_RECORD);
  });

  it('a corrupt back-channel record: COLO_PEER_STREAM_ERROR', async () => {
    const { guest, primary, s } = await setup('colo');
    await protect(s, primary, 'colo');
    const bad = Uint8Array.from(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 1 }));
    bad[15] = 0x5a; // padding must be zero
    await s.link.send(bad);
    await expectDropped(primary, guest, CoordinatorErrorCode.PEER_STREAM_ERROR);
  });

  it('no SUSPENDED after NEW_CHECKPOINT: phase timeout, the waiting request fails, the guest never paused', async () => {
    const { guest, primary, s } = await setup('colo');
    await protect(s, primary, 'colo');
    const request = primary.requestCheckpoint('miscompare');
    await s.until('NEW_CHECKPOINT', isNew);
    await expect(request).rejects.toMatchObject({ code: CoordinatorErrorCode.UNPROTECTED });
    await expectDropped(primary, guest, CoordinatorErrorCode.PHASE_TIMEOUT);
  });

  it('the secondary closes while the primary waits for READY: the suspended guest resumes', async () => {
    const { guest, primary, s } = await setup('colo');
    await protect(s, primary, 'colo');
    const request = primary.requestCheckpoint('manual');
    await s.until('NEW_CHECKPOINT', isNew);
    await s.control(ColoControl.SVM_SUSPENDED);
    await s.dirty([1, 2, 3]);
    await s.until('checkpoint data', isEnd, 2);
    expect(guest.state).toBe('suspended');
    s.link.close('bye');
    await expect(request).rejects.toMatchObject({ code: CoordinatorErrorCode.UNPROTECTED });
    await expectDropped(primary, guest, CoordinatorErrorCode.PEER_LOST);
  });

  it('the secondary hangs while the primary waits for READY: heartbeat timeout, guest resumed', async () => {
    const { guest, primary, s } = await setup('colo');
    await protect(s, primary, 'colo');
    void primary.requestCheckpoint('manual').catch(() => {});
    await s.until('NEW_CHECKPOINT', isNew);
    await s.control(ColoControl.SVM_SUSPENDED);
    await s.dirty([]);
    await s.until('checkpoint data', isEnd, 2);
    stallLink(s.link);
    await expectDropped(primary, guest, CoordinatorErrorCode.PEER_LOST);
  });

  it('Remus: an ACK for the wrong checkpoint: COLO_MISPLACED_RECORD', async () => {
    const { guest, primary, s } = await setup('remus');
    await s.until('initial checkpoint', isEnd);
    await s.ack(3);
    await expectDropped(primary, guest, CoordinatorErrorCode.MISPLACED_RECORD);
  });

  it('Remus: no ACK: phase timeout (the checkpoint is never reported safe)', async () => {
    const { guest, primary, s } = await setup('remus');
    await protect(s, primary, 'remus');
    const m = primary.requestCheckpoint('manual');
    await s.until('second checkpoint', isEnd, 2);
    await expect(m).rejects.toMatchObject({ code: CoordinatorErrorCode.UNPROTECTED });
    expect(primary.lastCompletedCheckpoint).toBe(1);
    await expectDropped(primary, guest, CoordinatorErrorCode.PHASE_TIMEOUT);
  });
});
