import { RespClient } from '../../packages/cli/src/client/resp-client.js';
import { ledgerCommand, type Ledger, type WorkloadOptions } from './ledger.js';

/**
 * Ledger clients pinned to service ports, as a user's clients pinned to both hosts' addresses: client i always
 * dials ports[i % ports.length], and after a refused dial or a lost connection it dials the same port again. So
 * clients keep writing to whichever node serves on their port, an old primary included: if two nodes ever
 * acknowledged writes at once, the ledger finds the writes the survivor lacks.
 */
export class PinnedClients {
  private stopping = false;
  private running: Promise<void>[] = [];
  private readonly live = new Set<RespClient>();
  readonly stats = { commands: 0, times: 0, reconnects: 0, acknowledged: 0 };
  readonly problems: string[] = [];
  /** The outage being watched: its start and the first write sent after it and acknowledged (Date.now() ms). */
  private outage: { since: number; firstAck: number | undefined } | undefined;
  private seq = 0;
  private readonly ledger: Ledger;
  private readonly o: WorkloadOptions & { ports: number[] };
  private readonly rnd: () => number;

  constructor(ledger: Ledger, o: WorkloadOptions & { ports: number[] }, rnd: () => number) {
    this.ledger = ledger;
    this.o = o;
    this.rnd = rnd;
  }

  start(): void {
    this.stopping = false;
    this.running = Array.from({ length: this.o.clients }, (_, i) => this.run(i));
  }

  /** From now, watch for the first acknowledged write: the end of the service's outage. */
  markOutage(): void {
    this.outage = { since: Date.now(), firstAck: undefined };
  }
  /** ms from markOutage() to the first write acknowledged after it (undefined: none yet). */
  outageMs(): number | undefined {
    return this.outage?.firstAck === undefined ? undefined : this.outage.firstAck - this.outage.since;
  }

  /** Stops every client after its current command; fails if one still waits for a reply after `timeoutMs`. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all(this.running),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`a client still waits for a reply ${timeoutMs} ms after being stopped (a hung node)`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      for (const c of this.live) c.close();
      this.live.clear();
      this.running = [];
    }
  }

  private async run(i: number): Promise<void> {
    const port = this.o.ports[i % this.o.ports.length]!;
    const seen = new Map<string, number>();
    while (!this.stopping) {
      let c: RespClient;
      try {
        c = await RespClient.connect('127.0.0.1', port, 2000);
      } catch {
        await sleep(50);
        continue;
      }
      this.live.add(c);
      try {
        while (!this.stopping) {
          const before = this.ledger.acknowledged;
          const sentAt = Date.now();
          await ledgerCommand(c, i, this.ledger, this.o, this.rnd, seen, this.stats, this.problems, () => ++this.seq);
          // A write sent after the outage began and acknowledged: the service is back.
          const o = this.outage;
          if (this.ledger.acknowledged > before && o && o.firstAck === undefined && sentAt >= o.since) o.firstAck = Date.now();
        }
      } catch {
        this.stats.reconnects++;
      } finally {
        c.close();
        this.live.delete(c);
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
