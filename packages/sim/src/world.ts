import { isCoordinatorError, PAIR_HOLDER, ProtectedNode, type CheckpointMeasurement, type PrimaryProxy, type ReplicationMode } from '@colo/coordinator';
import { SimulatedGuest, type Domain } from '@colo/domain';
import pino from 'pino';
import { SimArbiter } from './arbiter.js';
import { SimClock } from './clock.js';
import { SimNetwork } from './network.js';
import { Rng } from './rng.js';

/** The two hosts of the pair. */
export const HOSTS = ['a', 'b'] as const;
export type Host = (typeof HOSTS)[number];

export const FAULT_KINDS = ['crash', 'host-loss', 'freeze', 'partition', 'arbiter-off', 'reset', 'lost-answers', 'cut', 'garbage'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** One injected fault: what, on which host, when (simulated ms) and for how long. */
export interface Fault {
  at: number;
  kind: FaultKind;
  /** The primary or the secondary of the moment it strikes (crash, host-loss, freeze, arbiter-off, reset). */
  target: 'primary' | 'secondary';
  durationMs: number;
}

export interface RunOptions {
  seed: number;
  /** Simulated seconds of the run (the faults end at least `settleSeconds` before). */
  seconds?: number;
  /** The faults to inject; default: drawn from the seed. */
  faults?: readonly Fault[];
  /** COLO or Remus; default: drawn from the seed (modeFor). */
  mode?: ReplicationMode;
}

export interface RunResult {
  seed: number;
  mode: ReplicationMode;
  faults: Fault[];
  /** Empty when every invariant held. */
  violations: string[];
  simSeconds: number;
  /** Client writes acknowledged (their reply released). */
  acknowledged: number;
  checkpoints: number;
  /** COLO: checkpoints taken because the two guests' outputs differed. */
  miscompares: number;
  failovers: number;
  /** Times a node lost its peer (any of its links ended, or it dropped the peer). */
  peerLosses: number;
  /** The node that won the epoch to act alone was killed: no node may serve (safe; an operator decides). */
  pairLost: boolean;
  /** Callbacks the clock fired. */
  events: number;
}

const GUEST_BYTES = 64 * 1024;
/** Network profiles a seed draws from: one-way latency ranges (ms) of a LAN, a busy LAN, a metro link. */
const LATENCIES: [number, number][] = [
  [0.05, 2],
  [1, 10],
  [5, 40],
];
const KEYS_PER_CLIENT = 4;
const SETTLE_SECONDS = 15;
const PSK = new Uint8Array(32).fill(7);
const LISTEN_PORT = 7000;

/** The mode a seed runs in unless told: half COLO, half Remus (its own draw: the seed's other draws stay put). */
export function modeFor(seed: number): ReplicationMode {
  return new Rng(seed ^ 0xc01d).chance(0.5) ? 'colo' : 'remus';
}

/** The faults of a seed: up to four, each over before the run's last SETTLE_SECONDS. */
export function faultsFor(seed: number, seconds: number): Fault[] {
  const rng = new Rng(seed ^ 0x5eed);
  const n = rng.int(0, 4);
  const faults: Fault[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.pick(FAULT_KINDS);
    const durationMs = kind === 'freeze' ? rng.pick([200, 900, 1500, 4000, 12_000]) : rng.int(300, 6000);
    const latest = (seconds - SETTLE_SECONDS) * 1000 - durationMs;
    faults.push({ at: rng.int(1500, Math.max(1500, latest)), kind, target: rng.pick(['primary', 'secondary'] as const), durationMs });
  }
  return faults.sort((x, y) => x.at - y.at);
}

interface Process {
  id: number;
  host: Host;
  /** The node as `colo node` runs it (ProtectedNode), without a TCP service: clients reach its proxy directly. */
  node: ProtectedNode;
  guest: Domain | undefined;
  /** The primary proxy it serves clients through, once it does (ProtectedNode.onServing). */
  proxy: PrimaryProxy | undefined;
  ended: boolean;
  /** Link index of the checkpoint being taken (primary). */
  suspendingIndex: number | undefined;
  /** Secondary: the primary process it joined. */
  joined: Process | undefined;
  /** Secondary: its guest's memory after the last checkpoint it applied. */
  appliedMemory?: Buffer;
}

interface Pending {
  key: string;
  /** The version a SET writes; 0 for a TIME (a read whose answer differs on each guest). */
  version: number;
  proxy: PrimaryProxy;
  conn: number;
  sentAt: number;
}

/**
 * One simulated run: a pair of ProtectedNodes (COLO or Remus) on hosts a and b (host a starts as primary), the
 * simulated arbiter, two to six clients writing versioned keys through the primary's proxy, and the faults. A
 * supervisor restarts a node that ended as a secondary of the other host, as `colo pair` does. The invariants are
 * checked as the run goes and at its end; a violation is a sentence saying what and when.
 */
export async function runSimulation(opts: RunOptions): Promise<RunResult> {
  const seconds = opts.seconds ?? 40;
  const faults = [...(opts.faults ?? faultsFor(opts.seed, seconds))];
  const mode = opts.mode ?? modeFor(opts.seed);
  const rng = new Rng(opts.seed);
  const clock = new SimClock();
  const latencyMs = rng.pick(LATENCIES);
  const clients = rng.int(2, 6);
  const net = new SimNetwork({ clock, rng: rng.fork(), latencyMs });
  const arbiter = new SimArbiter(clock, rng.fork());
  const violations: string[] = [];
  // COLO_SIM_TRACE=1: every transition, checkpoint, release and fault of the run on stderr (replaying one seed).
  const tracing = process.env.COLO_SIM_TRACE === '1';
  // ... and the nodes' warnings and errors (silent otherwise: a run is thousands of them).
  const logger = tracing ? pino({ level: 'warn' }, pino.destination(2)) : pino({ level: 'silent' });
  const trace = (what: string) => {
    if (tracing) process.stderr.write(`${(clock.now / 1000).toFixed(3)} ${what}\n`);
  };
  const violate = (what: string) => {
    if (violations.length < 20) violations.push(`t=${(clock.now / 1000).toFixed(3)} s: ${what}`);
  };
  const uninstall = clock.install();
  const onRejection = (e: unknown) => violate(`unhandled rejection: ${(e as Error)?.stack ?? String(e)}`);
  process.on('unhandledRejection', onRejection);

  /** Persisted per host: the highest epoch its node saw (what a restarted node starts from). */
  const disk: Record<Host, number> = { a: 0, b: 0 };
  const live: Partial<Record<Host, Process>> = {};
  /** Per key, the highest version a client saw acknowledged. */
  const ledger = new Map<string, number>();
  /** The primary's memory at each checkpoint not yet applied: `${process id}:${link index}` (a copy: cheaper than a hash). */
  const writtenMemory = new Map<string, Buffer>();
  /** Per epoch, the hosts that released output in it. */
  const releasers = new Map<number, Set<Host>>();
  let acknowledged = 0;
  let checkpoints = 0;
  let miscompares = 0;
  let peerLosses = 0;
  let failovers = 0;
  let nextProcess = 1;
  let nextConn = 1;
  let lastProtected = 0;
  /** When a fault last killed each host's process. */
  const killedAt: Partial<Record<Host, number>> = {};
  let pairLost = false;

  const other = (h: Host): Host => (h === 'a' ? 'b' : 'a');
  const versionIn = (guest: Domain | undefined, key: string): number => {
    const v = (guest as SimulatedGuest | undefined)?.readKey(key);
    return v ? Number(v.toString().slice(1)) : 0;
  };
  const checkLedger = (guest: Domain | undefined, when: string) => {
    for (const [key, version] of ledger) {
      const held = versionIn(guest, key);
      if (held < version) violate(`${when}: key ${key} holds version ${held}, but version ${version} was acknowledged`);
    }
  };

  const newGuest = (suspended: boolean) =>
    new SimulatedGuest({ memoryBytes: GUEST_BYTES, uuid: '00000000-0000-4000-8000-00000000c010', startSuspended: suspended, random: () => rng.next(), clock: () => Date.now() });

  /** Starts a node on `host` (in a turn of its own): the primary with a new guest, or a secondary of the other host. */
  const start = (host: Host, role: 'primary' | 'secondary') =>
    clock.later(host, 0, () => {
      const id = nextProcess++;
      const guest = role === 'primary' ? newGuest(false) : undefined;
      const node = new ProtectedNode({
        nodeId: host,
        version: 'simulated',
        role,
        mode,
        ...(guest ? { domain: guest } : {}),
        hostGuest: () => {
          const g = newGuest(true);
          p.guest = g;
          return g;
        },
        replication: { listen: { host, port: LISTEN_PORT }, ...(role === 'secondary' ? { peer: `ws://${other(host)}:${LISTEN_PORT}` } : {}) },
        security: { psk: PSK },
        heartbeat: { intervalMs: 100, timeoutMs: 1000 },
        checkpoint: { remusIntervalMs: 100, maxIntervalMs: 1000, phaseTimeoutMs: 2000, stallTimeoutMs: 2000 },
        arbiter: arbiter.forHost(host),
        epoch: disk[host],
        network: net.forHost(host),
        connectTimeoutMs: 3000,
        service: {},
        // The collector's pauses are the process's, in real time: nothing to do with simulated checkpoints.
        watchCollector: false,
        logger,
      });
      const p: Process = { id, host, node, guest, proxy: undefined, ended: false, suspendingIndex: undefined, joined: role === 'secondary' ? live[other(host)] : undefined };
      live[host] = p;
      wire(p);
      node.start().catch((e: unknown) => {
        typed(e, `${host} start`);
        end(p, 1000);
      });
    });

  const typed = (e: unknown, where: string) => {
    if (!isCoordinatorError(e) && !(e as { code?: unknown })?.code) violate(`${where}: an untyped error: ${(e as Error)?.stack ?? String(e)}`);
  };

  /** The process is over (it stopped, or its host's supervisor saw it end): restart it as a secondary after `restartMs`. */
  const end = (p: Process, restartMs: number) => {
    if (p.ended) return;
    p.ended = true;
    disk[p.host] = Math.max(disk[p.host], p.node.epoch);
    p.proxy = undefined;
    clock.later(p.host, 0, () => void p.node.stop().catch(() => undefined));
    clock.later(p.host, restartMs, () => {
      if (live[p.host] === p) {
        delete live[p.host];
        start(p.host, 'secondary');
      }
    });
  };

  /**
   * The run's observers of a node: its primary proxies (for the clients and the releases), and the replication
   * node's events (for the invariants). The node's own wiring (proxy to engine, arbiter to output) is ProtectedNode's,
   * as in `colo node`.
   */
  const wire = (p: Process) => {
    p.node.onServing((proxy) => {
      p.proxy = proxy;
      proxy.onRelease((conn, bytes) => released(p, proxy, conn, bytes));
    });
    const n = p.node.replication;
    n.on('suspending', (linkIndex) => {
      trace(`${p.host}#${p.id} suspending (link index ${linkIndex})`);
      p.suspendingIndex = linkIndex;
    });
    n.on('resumed', () => trace(`${p.host}#${p.id} resumed`));
    n.on('peerLost', (reason) => {
      peerLosses++;
      trace(`${p.host}#${p.id} lost its peer: ${reason}`);
    });
    n.on('written', (_seq, d) => {
      if (p.suspendingIndex === undefined) return;
      writtenMemory.set(`${p.id}:${p.suspendingIndex}`, Buffer.from(d.pages!(0, d.pageCount)));
      writtenMemory.delete(`${p.id}:${p.suspendingIndex - 64}`);
    });
    n.on('applied', (index, d) => {
      const primary = p.joined;
      if (!primary) return;
      const want = writtenMemory.get(`${primary.id}:${index}`);
      if (want === undefined) violate(`${p.host} applied checkpoint ${index} of process ${primary.id}, which never wrote it`);
      else if (Buffer.compare(want, d.pages!(0, d.pageCount)) !== 0) violate(`${p.host} applied checkpoint ${index}: its memory is not the primary's at that checkpoint`);
      writtenMemory.delete(`${primary.id}:${index}`);
      p.appliedMemory = Buffer.from(d.pages!(0, d.pageCount));
    });
    n.on('checkpoint', (m: CheckpointMeasurement) => {
      checkpoints++;
      if (m.reason === 'miscompare') miscompares++;
      trace(`${p.host}#${p.id} checkpoint ${m.seq} link index ${m.linkIndex} (${m.reason})`);
    });
    n.onTransition((t) => {
      trace(`${p.host}#${p.id} ${t.role} ${t.from} -> ${t.to} (${t.event}) epoch ${t.epoch}`);
      if (t.role === 'primary' && t.to.startsWith('protected')) lastProtected = clock.now;
    });
    // No node acts alone without having won its epoch: the arbiter's own log must hold the swap that gave it.
    const won = (epoch: number, what: string) => {
      if (!arbiter.decisions.some((d) => d.swapped && d.host === p.host && d.next.holder === p.host && d.next.epoch === epoch)) {
        violate(`${p.host} ${what} at epoch ${epoch}, which the arbiter never gave it`);
      }
    };
    n.on('continuing', (epoch) => won(epoch, 'went on alone'));
    // A pair that loses its peer with nothing failed has a bug of its own (a spurious failover costs a resync).
    n.on('deciding', (e) => {
      if (faults.length === 0 || clock.now < faults[0]!.at) violate(`${p.host} lost its peer before any fault: ${e.message}`);
    });
    n.on('promoted', (epoch) => {
      won(epoch, 'was promoted');
      failovers++;
      disk[p.host] = Math.max(disk[p.host], epoch);
      checkLedger(p.guest, `${p.host} promoted at epoch ${epoch}`);
      // No half-applied checkpoint: a Remus secondary's guest, promoted, is exactly the last checkpoint it applied
      // (a COLO secondary's guest ran on from it, on the primary's mirrored input: the ledger is its test).
      const g = p.guest;
      if (!g || !p.appliedMemory) violate(`${p.host} promoted at epoch ${epoch} without a complete checkpoint`);
      else if (mode === 'remus' && Buffer.compare(p.appliedMemory, g.pages!(0, g.pageCount)) !== 0) violate(`${p.host} promoted at epoch ${epoch}: its guest is not the last checkpoint it applied`);
    });
    n.on('fenced', (e) => {
      typed(e, `${p.host} fenced`);
      end(p, 1000);
    });
    n.on('halted', (e) => {
      typed(e, `${p.host} halted`);
      end(p, 1000);
    });
  };

  // ---- clients: one write at a time each, through the current primary's proxy

  const pending = new Map<number, Pending>();
  const versions = new Map<string, number>();
  const released = (p: Process, proxy: PrimaryProxy, conn: number, bytes: Uint8Array | null) => {
    const epoch = p.node.epoch;
    let set = releasers.get(epoch);
    if (!set) releasers.set(epoch, (set = new Set()));
    set.add(p.host);
    if (set.size > 1) violate(`both nodes released output at epoch ${epoch}`);
    const w = pending.get(conn);
    if (!w || w.proxy !== proxy || bytes === null) return;
    if (w.version === 0) {
      pending.delete(conn);
      return;
    }
    if (!Buffer.from(bytes).toString('latin1').includes('+OK')) return;
    pending.delete(conn);
    trace(`${p.host}#${p.id} acknowledged ${w.key} v${w.version} (epoch ${epoch})`);
    ledger.set(w.key, Math.max(ledger.get(w.key) ?? 0, w.version));
    acknowledged++;
  };
  const clientConns = new Map<string, { proxy: PrimaryProxy; conn: number; host: Host; id: number }>();
  /**
   * A client keeps its connection while it is answered. A write unanswered for 3 s is given up: the client drops
   * that connection (a late reply on it counts for nothing, as for a real client that timed out) and connects to a
   * node that says it is the primary (a stale one, thawed, included: that is the danger being tested).
   */
  const clientTick = (c: number) => {
    const mine = [...pending.values()].find((w) => w.key.startsWith(`c${c}:`));
    if (mine && clock.now - mine.sentAt < 3000) return;
    let cc = clientConns.get(`${c}`);
    if (mine) {
      pending.delete(mine.conn);
      cc = undefined;
    }
    const claimants = HOSTS.map((h) => live[h]).filter((p): p is Process => !!p && !p.ended && p.node.role === 'primary' && !!p.proxy);
    if (cc && !claimants.some((p) => p.proxy === cc!.proxy)) cc = undefined;
    if (!cc) {
      if (claimants.length === 0) return;
      const primary = rng.pick(claimants);
      const proxy = primary.proxy!;
      // Connection ids are the simulation's, never reused: a promoted guest knows the old primary's connections.
      cc = { proxy, conn: nextConn++, host: primary.host, id: primary.id };
      const conn = cc.conn;
      clock.later(primary.host, net.latency(), () => {
        try {
          proxy.input(conn, 'open');
        } catch {
          // A closed proxy: the next tick finds the new primary.
        }
      });
      clientConns.set(`${c}`, cc);
    }
    const proxy = cc.proxy;
    const primary = { host: cc.host, id: cc.id };
    // Now and then a TIME, whose answer no two guests give alike: in COLO the outputs differ and the primary
    // checkpoints (miscompare) before releasing it.
    const time = rng.chance(0.02);
    const key = time ? `c${c}:time` : `c${c}:k${rng.int(0, KEYS_PER_CLIENT - 1)}`;
    const version = time ? 0 : (versions.get(key) ?? 0) + 1;
    if (!time) versions.set(key, version);
    const value = `v${version}`;
    const cmd = time ? '*1\r\n$4\r\nTIME\r\n' : `*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`;
    pending.set(cc.conn, { key, version, proxy, conn: cc.conn, sentAt: clock.now });
    const conn = cc.conn;
    // The request reaches the primary's host over the network, in that host's turn.
    clock.later(primary.host, net.latency(), () => {
      trace(`${primary.host}#${primary.id} input ${key} v${version} (conn ${conn})`);
      try {
        proxy.input(conn, 'data', Buffer.from(cmd, 'latin1'));
      } catch {
        pending.delete(conn);
      }
    });
  };

  // ---- faults

  /** The primary in truth: of the nodes that think they are one, the one at the highest epoch (a thawed one is stale). */
  const truePrimary = (): Host | undefined =>
    HOSTS.filter((h) => live[h] && !live[h]!.ended && live[h]!.node.role === 'primary').sort((x, y) => live[y]!.node.epoch - live[x]!.node.epoch)[0];
  const roleHost = (target: 'primary' | 'secondary'): Host | undefined => {
    const primary = truePrimary();
    if (!primary) return undefined;
    return target === 'primary' ? primary : other(primary);
  };
  const pairProtected = () => HOSTS.some((h) => live[h] && !live[h]!.ended && live[h]!.node.replication.isProtectedPrimary);
  /**
   * The pair is protected in truth: the arbiter records it as a pair and the secondary process lives (frozen or cut
   * off perhaps). Not what either node believes: a frozen secondary still thinks itself protected after its
   * primary went on alone (and then the primary's loss is the loss of an unprotected guest).
   */
  const secondaryCanTakeOver = (primary: Host) => {
    const s = live[other(primary)];
    // ... and that process holds a checkpoint: a secondary restarted while the primary had not yet noticed the
    // old one's loss is refused until it does, and holds nothing.
    return !!s && !s.ended && s.node.role === 'secondary' && s.appliedMemory !== undefined && arbiter.record?.holder === PAIR_HOLDER;
  };
  /**
   * The host's process dies and starts again as a secondary after `restartMs`: as a process (SIGKILL: the kernel
   * closes its sockets, the peer hears it) or with the whole host (nothing more from it; it comes back empty).
   */
  const crash = (host: Host, restartMs: number, how: 'process' | 'host' = 'process') => {
    const p = live[host];
    if (!p || p.ended) return;
    killedAt[host] = clock.now;
    if (how === 'host') net.hostLost(host);
    else net.processEnded(host);
    clock.kill(host);
    p.ended = true;
    disk[host] = Math.max(disk[host], p.node.epoch);
    delete live[host];
    clock.later(undefined, restartMs, () => {
      if (how === 'host') net.hostBack(host);
      start(host, 'secondary');
    });
  };
  const inject = (f: Fault) => {
    const host = roleHost(f.target);
    trace(`fault ${f.kind} on the ${f.target} (${host ?? 'none'}) for ${f.durationMs} ms`);
    if (!host) return;
    // Losing the primary while no secondary holds a checkpoint loses the pair (a double fault): not injected.
    const losesPair = (f.kind === 'crash' || f.kind === 'host-loss') && host === truePrimary() && !secondaryCanTakeOver(host);
    if (losesPair) return;
    switch (f.kind) {
      case 'crash':
        crash(host, f.durationMs);
        return;
      case 'host-loss':
        crash(host, f.durationMs, 'host');
        return;
      case 'freeze':
        clock.freeze(host);
        setTimeout(() => clock.thaw(host), f.durationMs);
        return;
      case 'partition':
        net.partition('a', 'b');
        setTimeout(() => net.heal('a', 'b'), f.durationMs);
        return;
      case 'arbiter-off':
        arbiter.cutOff(host, true);
        setTimeout(() => arbiter.cutOff(host, false), f.durationMs);
        return;
      case 'reset':
        net.reset(host);
        return;
      case 'cut':
        // The target's next message (a checkpoint's stream, an acknowledgement) is cut short and the link breaks.
        net.cutNextMessage(host);
        if (f.target === 'primary' && f.durationMs > 3000) {
          // ... and then the primary dies: the secondary must take over from its last complete checkpoint.
          clock.later(undefined, 30, () => {
            if (secondaryCanTakeOver(host)) crash(host, 1000);
          });
        }
        return;
      case 'garbage':
        // Bad bytes from the target: its next message (a checkpoint, an acknowledgement, mirrored input) comes
        // after garbage; the peer must refuse it with a typed error and lose it, never apply it.
        net.garbleNextMessage(host);
        return;
      case 'lost-answers':
        arbiter.lostAnswers = 0.5;
        setTimeout(() => (arbiter.lostAnswers = 0), f.durationMs);
        return;
    }
  };

  try {
    start('a', 'primary');
    clock.later(undefined, 200, () => start('b', 'secondary'));
    for (let c = 0; c < clients; c++) {
      const tick = () => {
        clientTick(c);
        // Think times down to none: some writes land while a checkpoint is in flight.
        setTimeout(tick, rng.chance(0.3) ? 0 : rng.int(1, 80));
      };
      setTimeout(tick, 500 + c * 7);
    }
    for (const f of faults) setTimeout(() => inject(f), f.at);
    await clock.run(seconds * 1000, () => violations.length >= 20);

    // ---- the end: one primary serving, protected again, holding every acknowledged write
    const primaries = HOSTS.filter((h) => live[h] && !live[h]!.ended && live[h]!.node.role === 'primary');
    // A node that won the epoch to act alone and was then killed leaves the pair without a guest anyone may serve:
    // the arbiter names it, the other node must not take over (its guest misses what the winner acknowledged
    // alone), and an operator decides. Safe, and expected of such a double fault; anything else must recover.
    const record = arbiter.record;
    const lastWin = arbiter.decisions.filter((d) => d.swapped).at(-1);
    const holderKilled = record !== null && record.holder !== PAIR_HOLDER && lastWin !== undefined && (killedAt[record.holder as Host] ?? -1) >= lastWin.at - 10_000;
    if (primaries.length === 0 && holderKilled) {
      pairLost = true;
    } else {
      if (primaries.length !== 1) violate(`${primaries.length} primaries at the end (${primaries.join(', ') || 'none'})`);
      const serving = primaries.length === 1 ? live[primaries[0]!] : undefined;
      if (serving) checkLedger(serving.guest, `the end, primary ${serving.host}`);
      if (!pairProtected()) violate(`the pair is not protected ${SETTLE_SECONDS} s after the last fault (last protected at t=${(lastProtected / 1000).toFixed(3)} s)`);
    }
    if (acknowledged === 0) violate('no write was acknowledged in the whole run');
  } finally {
    // Stopping takes simulated time too (closing links, the arbiter's last word): the clock runs it out.
    for (const h of HOSTS) {
      const p = live[h];
      if (!p) continue;
      p.ended = true;
      clock.later(h, 0, () => void p.node.stop().catch(() => undefined));
    }
    await clock.run(clock.now + 5000).catch(() => undefined);
    process.off('unhandledRejection', onRejection);
    uninstall();
  }
  // The run's own length (the shutdown after it is not counted).
  return { seed: opts.seed, mode, faults, violations, simSeconds: seconds, acknowledged, checkpoints, miscompares, failovers, peerLosses, pairLost, events: clock.fired };
}
