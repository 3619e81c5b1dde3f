import { SimulatedGuest } from '@colo/domain';
import {
  ColoControl,
  EmulatorId,
  encodeLibxcDomainHeader,
  encodeLibxcImageHeader,
  encodeLibxlHeader,
  encodePageData,
  encodeRecord,
  GuestType,
  StreamDecoder,
  type StreamRecord,
} from '@colo/stream';
import {
  ALL_EXTENSIONS,
  CHECKPOINT_ACK_RECORD,
  encodeGuestIdentity,
  GUEST_IDENTITY_RECORD,
  listenForPeers,
  PROTOCOL_VERSION,
  type PeerLink,
  type PeerServer,
  type ReplicationMode,
} from '../internals.js';
import { resp } from './pair.js';

/**
 * A primary written by hand from the codec and the real transport, so a test can stop or corrupt the handshake
 * at any step. It is deliberately not the engine under test: it follows colo-protocol.md step by step.
 */
export class ScriptedPrimary {
  readonly guest: SimulatedGuest;
  private readonly decoder = new StreamDecoder({ kind: 'back-channel' });
  private readonly inbox: StreamRecord[] = [];
  private wake: (() => void) | undefined;
  readonly link: PeerLink;
  constructor(link: PeerLink, pages: number) {
    this.link = link;
    this.guest = new SimulatedGuest({ memoryBytes: pages * 4096, name: 'scripted' });
    this.guest.openConnection(1);
    for (let i = 0; i < 40; i++) this.guest.deliverInput(1, resp('SET', `key${i}`, `value-${i}-`.repeat(20)));
    link.onData((b) => {
      for (const item of this.decoder.push(b)) if (item.item === 'record') this.inbox.push(item.record);
      this.wake?.();
    });
  }

  /** Next back-channel record (fails the test after 3 s). */
  async next(): Promise<StreamRecord> {
    const deadline = Date.now() + 3000;
    while (this.inbox.length === 0) {
      if (Date.now() > deadline) throw new Error('scripted primary: no back-channel record in 3 s');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
    return this.inbox.shift()!;
  }

  async expectControl(id: number): Promise<void> {
    const r = await this.next();
    if (r.kind !== 'CHECKPOINT_STATE' || r.controlId !== id) throw new Error(`expected control ${id}, got ${JSON.stringify(r)}`);
  }

  async expectDirtyList(): Promise<number[]> {
    const r = await this.next();
    if (r.kind !== 'CHECKPOINT_DIRTY_PFN_LIST') throw new Error(`expected a dirty list, got ${r.kind}`);
    return r.pfns;
  }

  async expectAck(): Promise<number> {
    const r = await this.next();
    if (r.kind !== 'OPTIONAL' || r.type !== CHECKPOINT_ACK_RECORD) throw new Error(`expected an ACK, got ${r.kind}`);
    return Number(new DataView(r.body.buffer, r.body.byteOffset, 8).getBigUint64(0, true));
  }

  send(b: Uint8Array): Promise<void> {
    return this.link.send(b);
  }

  headers(): Uint8Array {
    const g = this.guest;
    return cat([
      encodeLibxlHeader(),
      encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: GUEST_IDENTITY_RECORD, body: encodeGuestIdentity({ uuid: g.uuid, name: g.name, pageCount: g.pageCount }) }),
      encodeRecord({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }),
      encodeLibxcImageHeader(),
      encodeLibxcDomainHeader({ guestType: GuestType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 }),
      encodeRecord({ layer: 'libxc', kind: 'STATIC_DATA_END' }),
    ]);
  }

  pages(pfns: number[]): Uint8Array {
    return encodePageData(pfns, (p) => this.guest.page(p));
  }

  /** TSC, HVM_CONTEXT, HVM_PARAMS, CHECKPOINT: the libxc end of a checkpoint. */
  libxcTail(): Uint8Array {
    const g = this.guest;
    return cat([
      encodeRecord({ layer: 'libxc', kind: 'X86_TSC_INFO', ...g.getTscInfo() }),
      encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: g.getVcpuContext() }),
      encodeRecord({ layer: 'libxc', kind: 'HVM_PARAMS', params: g.getHvmParams() }),
      encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT' }),
    ]);
  }

  emulatorContext(): Uint8Array {
    return encodeRecord({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: EmulatorId.QEMU_UPSTREAM, index: 0, blob: this.guest.getDeviceState() });
  }

  static checkpointEnd(): Uint8Array {
    return encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_END' });
  }
  static control(id: number): Uint8Array {
    return encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: id });
  }
  static readonly NEW = ColoControl.NEW_CHECKPOINT;

  /** Changes some guest state, so the next checkpoint differs from the last. */
  mutate(round: number): void {
    for (let i = 0; i < 10; i++) this.guest.deliverInput(1, resp('SET', `key${i}`, `round-${round}-`.repeat(30)));
  }
}

export async function listenScripted(opts: {
  mode: ReplicationMode;
  psk: Uint8Array;
  epoch?: number;
  pages: number;
  heartbeat: { intervalMs: number; timeoutMs: number };
  script: (p: ScriptedPrimary) => Promise<void>;
}): Promise<{ server: PeerServer; done: Promise<ScriptedPrimary> }> {
  let resolve!: (p: ScriptedPrimary) => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<ScriptedPrimary>((a, b) => ((resolve = a), (reject = b)));
  const server = await listenForPeers({
    host: '127.0.0.1',
    port: 0,
    security: { psk: opts.psk },
    heartbeat: opts.heartbeat,
    // A `colo node` secondary also dials the output proxy's channel: answered, kept open, never scripted.
    hello: (peer) => ({
      protocol: PROTOCOL_VERSION,
      channel: peer.channel === 'proxy' ? 'proxy' : 'replication',
      nodeId: 'scripted-primary',
      role: 'primary',
      mode: opts.mode,
      epoch: opts.epoch ?? 0,
      extensions: [...ALL_EXTENSIONS],
    }),
    onLink: (link) => {
      if (link.peerHello.channel !== 'replication') return;
      const p = new ScriptedPrimary(link, opts.pages);
      opts.script(p).then(() => resolve(p), reject);
    },
  });
  return { server, done };
}

export function cat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}
