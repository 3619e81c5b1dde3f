import { randomBytes } from 'node:crypto';
import { getStatus, postAction, type NodeStatusDoc } from '../client/admin-client.js';
import { RespClient, RespError } from '../client/resp-client.js';

export interface DrillOptions {
  /**
   * failover (default): crash the primary, the secondary takes over. restart-secondary (VMware FT's "test restart
   * secondary"): crash the secondary; the primary must keep serving and the pair re-protect.
   */
  kind?: 'failover' | 'restart-secondary';
  nodes: string[];
  token: string | undefined;
  /** Ledger size: keys written (each SET, plus one INCR of a counter). */
  keys: number;
  protectTimeoutMs: number;
  failoverTimeoutMs: number;
  reprotectTimeoutMs: number;
  /** Skip waiting for a secondary to rejoin (when nothing restarts the failed node). */
  waitReprotect: boolean;
}

export interface DrillStep {
  name: string;
  ok: boolean;
  seconds: number;
  detail: string;
}

export interface DrillReport {
  kind: 'failover' | 'restart-secondary';
  ok: boolean;
  /** Why the drill refused to run at all (a target in blackhole mode protects nothing). */
  refused?: 'blackhole';
  runId: string;
  primaryBefore?: string;
  primaryAfter?: string;
  rtoSeconds?: number;
  /** restart-secondary: from the secondary's crash to the pair protected again. */
  reprotectSeconds?: number;
  /** restart-secondary: writes acknowledged by the primary meanwhile, and the longest wait for one. */
  whileRestarting?: { acknowledged: number; longestWaitSeconds: number };
  ledger: { written: number; acknowledged: number; verified: number; missing: string[]; wrong: string[]; counter?: { acknowledged: number; found: number } };
  steps: DrillStep[];
}

/** Test seams: code run between steps (e.g. a test that makes a ledger key go missing on purpose). */
export interface DrillHooks {
  afterLedger?(ctx: { service: { host: string; port: number }; keys: string[] }): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class StepFailed extends Error {}

/**
 * A whole failover drill against a running pair: protected? -> write a ledger through the service -> crash the
 * primary -> time until the secondary serves (RTO) -> every acknowledged write is there -> re-protected.
 */
export async function runDrill(opts: DrillOptions, hooks: DrillHooks = {}, progress: (line: string) => void = () => {}): Promise<DrillReport> {
  const runId = randomBytes(4).toString('hex');
  const kind = opts.kind ?? 'failover';
  const report: DrillReport = { kind, ok: false, runId, ledger: { written: 0, acknowledged: 0, verified: 0, missing: [], wrong: [] }, steps: [] };

  async function step<T>(name: string, f: () => Promise<{ value: T; detail: string }>): Promise<T> {
    const t0 = performance.now();
    progress(`${name} ...`);
    try {
      const { value, detail } = await f();
      report.steps.push({ name, ok: true, seconds: (performance.now() - t0) / 1000, detail });
      progress(`${name}: ok (${detail})`);
      return value;
    } catch (e) {
      const detail = e instanceof Error ? e.message : String(e);
      report.steps.push({ name, ok: false, seconds: (performance.now() - t0) / 1000, detail });
      progress(`${name}: FAILED (${detail})`);
      throw new StepFailed(detail);
    }
  }

  async function statuses(): Promise<{ node: string; s: NodeStatusDoc | undefined }[]> {
    return Promise.all(opts.nodes.map(async (node) => ({ node, s: await getStatus(node, 2000).catch(() => undefined) })));
  }

  /** Every write acknowledged, by key, and the counter's highest acknowledged value. */
  const ledger = new Map<string, string>();
  const counterKey = `drill:${runId}:counter`;
  let counterAcked = 0;

  /** Every acknowledged key of the ledger reads back from `from`'s service, and the counter never went back. */
  async function verifyLedger(from: { node: string; s: NodeStatusDoc }): Promise<void> {
    await step('verify ledger', async () => {
      const svc = from.s.service!;
      const client = await RespClient.connect(svc.host, svc.port);
      try {
        const keys = [...ledger.keys()];
        const replies = await Promise.all(keys.map((k) => client.command('GET', k)));
        keys.forEach((k, i) => {
          const r = replies[i];
          if (r === null) report.ledger.missing.push(k);
          else if (r instanceof RespError || r !== ledger.get(k)) report.ledger.wrong.push(k);
          else report.ledger.verified++;
        });
        const counter = await client.command('GET', counterKey);
        report.ledger.counter = { acknowledged: counterAcked, found: typeof counter === 'string' ? Number(counter) : 0 };
      } finally {
        client.close();
      }
      const problems: string[] = [];
      if (report.ledger.missing.length) problems.push(`${report.ledger.missing.length} acknowledged keys MISSING (first: ${report.ledger.missing.slice(0, 3).join(', ')})`);
      if (report.ledger.wrong.length) problems.push(`${report.ledger.wrong.length} keys with WRONG values (first: ${report.ledger.wrong.slice(0, 3).join(', ')})`);
      if (report.ledger.counter.found < counterAcked) problems.push(`counter went BACKWARDS: ${report.ledger.counter.found} < acknowledged ${counterAcked}`);
      if (problems.length) throw new Error(problems.join('; '));
      return { value: undefined, detail: `${report.ledger.verified}/${ledger.size} keys and counter ${report.ledger.counter.found} >= ${counterAcked}` };
    });
  }

  try {
    const { primary, secondary } = await step('pair is protected', async () => {
      const deadline = Date.now() + opts.protectTimeoutMs;
      for (;;) {
        const all = await statuses();
        const hole = all.find((x) => x.s?.blackhole === true);
        if (hole) {
          report.refused = 'blackhole';
          throw new Error(`${hole.s!.nodeId} (${hole.node}) runs in blackhole mode: its checkpoints go nowhere and nothing would take over; a crash would lose every write. Drill a real pair (docs/operations.md)`);
        }
        const p = all.find((x) => x.s?.role === 'primary');
        const sec = all.find((x) => x.s?.role === 'secondary');
        if (p?.s?.protected && p.s.service && sec) {
          return { value: { primary: { node: p.node, s: p.s }, secondary: { node: sec.node, s: sec.s! } }, detail: `primary ${p.s.nodeId}, secondary ${sec.s!.nodeId}, epoch ${p.s.epoch}` };
        }
        if (Date.now() > deadline) {
          throw new Error(`no protected primary with a secondary after ${opts.protectTimeoutMs / 1000} s: ${all.map((x) => `${x.node}=${x.s ? `${x.s.role}${x.s.protected ? '/protected' : ''}` : 'unreachable'}`).join(', ')}`);
        }
        await sleep(200);
      }
    });
    report.primaryBefore = primary.s.nodeId;

    await step('write ledger', async () => {
      const svc = primary.s.service!;
      const client = await RespClient.connect(svc.host, svc.port);
      try {
        const writes: Promise<void>[] = [];
        for (let i = 0; i < opts.keys; i++) {
          const key = `drill:${runId}:${i}`;
          const value = `v${i}-${runId}`;
          report.ledger.written++;
          writes.push(
            client.command('SET', key, value).then((r) => {
              if (r === 'OK') ledger.set(key, value);
            }),
            client.command('INCR', counterKey).then((r) => {
              if (typeof r === 'number') counterAcked = Math.max(counterAcked, r);
            }),
          );
        }
        await Promise.all(writes);
      } finally {
        client.close();
      }
      report.ledger.acknowledged = ledger.size;
      if (ledger.size !== opts.keys) throw new Error(`only ${ledger.size} of ${opts.keys} writes acknowledged`);
      return { value: undefined, detail: `${ledger.size} keys and counter=${counterAcked} acknowledged by ${svc.host}:${svc.port}` };
    });
    await hooks.afterLedger?.({ service: primary.s.service!, keys: [...ledger.keys()] });

    if (kind === 'restart-secondary') {
      const crashedAt = await step('crash the secondary', async () => {
        await postAction(secondary.node, 'crash', opts.token, 5000);
        return { value: performance.now(), detail: `POST ${secondary.node}/crash accepted` };
      });
      await step('primary serves on and the pair re-protects', async () => {
        const svc = primary.s.service!;
        const client = await RespClient.connect(svc.host, svc.port);
        const deadline = Date.now() + opts.reprotectTimeoutMs;
        let acknowledged = 0;
        let longest = 0;
        // Protected again counts only after the primary has been seen without its secondary: right after the
        // crash it may not have noticed yet (a host gone silently takes heartbeat.timeout to notice).
        let sawUnprotected = false;
        try {
          // Writes go on throughout: each must be acknowledged by the same primary (held while it asks the arbiter
          // whether to go on alone, then released); the loop ends once the pair is protected again.
          for (let i = 0; ; i++) {
            const key = `drill:${runId}:restart:${i}`;
            const value = `r${i}-${runId}`;
            const t0 = performance.now();
            const r = await client.command('SET', key, value);
            if (r !== 'OK') throw new Error(`SET ${key} answered ${String(r)}`);
            longest = Math.max(longest, (performance.now() - t0) / 1000);
            ledger.set(key, value);
            acknowledged++;
            report.ledger.written++;
            const s = await getStatus(primary.node, 1000).catch(() => undefined);
            if (s && s.role !== 'primary') throw new Error(`${primary.s.nodeId} is no longer primary (${s.role}): losing its secondary must not cost it the service`);
            if (s?.role === 'primary' && !s.protected) sawUnprotected = true;
            if (s?.role === 'primary' && s.protected && sawUnprotected) {
              report.reprotectSeconds = (performance.now() - crashedAt) / 1000;
              break;
            }
            if (Date.now() > deadline) throw new Error(`not protected again within ${opts.reprotectTimeoutMs / 1000} s (the secondary is restarted by colo pair, systemd or you)`);
            await sleep(20);
          }
        } finally {
          client.close();
        }
        report.whileRestarting = { acknowledged, longestWaitSeconds: longest };
        report.ledger.acknowledged = ledger.size;
        return { value: undefined, detail: `${acknowledged} writes acknowledged meanwhile (longest wait ${(longest * 1000).toFixed(0)} ms), protected again after ${report.reprotectSeconds!.toFixed(3)} s` };
      });
      await verifyLedger(primary);
      report.ok = true;
      return report;
    }

    const crashedAt = await step('crash the primary', async () => {
      await postAction(primary.node, 'crash', opts.token, 5000);
      return { value: performance.now(), detail: `POST ${primary.node}/crash accepted` };
    });

    const newPrimary = await step('secondary takes over and serves', async () => {
      const deadline = Date.now() + opts.failoverTimeoutMs;
      for (;;) {
        const s = await getStatus(secondary.node, 1000).catch(() => undefined);
        if (s?.role === 'primary' && s.service) {
          const c = await RespClient.connect(s.service.host, s.service.port, 1000).catch(() => undefined);
          const pong = await c?.command('PING').catch(() => undefined);
          c?.close();
          if (pong === 'PONG') {
            report.rtoSeconds = (performance.now() - crashedAt) / 1000;
            return { value: { node: secondary.node, s }, detail: `${s.nodeId} serves at ${s.service.host}:${s.service.port}, epoch ${s.epoch}, RTO ${report.rtoSeconds.toFixed(3)} s` };
          }
        }
        if (Date.now() > deadline) throw new Error(`${secondary.node} did not serve as primary within ${opts.failoverTimeoutMs / 1000} s (last role: ${s?.role ?? 'unreachable'})`);
        await sleep(25);
      }
    });
    report.primaryAfter = newPrimary.s.nodeId;

    await verifyLedger(newPrimary);

    if (opts.waitReprotect) {
      await step('re-protected', async () => {
        const deadline = Date.now() + opts.reprotectTimeoutMs;
        for (;;) {
          const s = await getStatus(newPrimary.node, 1000).catch(() => undefined);
          if (s?.role === 'primary' && s.protected) return { value: undefined, detail: `${s.nodeId} protected again (peer ${s.peer ?? '?'})` };
          if (Date.now() > deadline) throw new Error(`not protected again within ${opts.reprotectTimeoutMs / 1000} s: start a secondary (docs/operations.md, "Re-protect")`);
          await sleep(200);
        }
      });
    }
    report.ok = true;
  } catch (e) {
    if (!(e instanceof StepFailed)) {
      report.steps.push({ name: 'drill', ok: false, seconds: 0, detail: e instanceof Error ? e.message : String(e) });
    }
  }
  return report;
}

export function formatDrillReport(r: DrillReport): string {
  const lines = [`colo drill${r.kind === 'restart-secondary' ? ' --restart-secondary' : ''} ${r.runId}: ${r.ok ? 'PASSED' : 'FAILED'}`];
  for (const s of r.steps) lines.push(`  ${s.ok ? 'ok  ' : 'FAIL'} ${s.name.padEnd(34)} ${s.seconds.toFixed(3).padStart(8)} s  ${s.detail}`);
  if (r.rtoSeconds !== undefined) lines.push(`  RTO (crash -> new primary serves): ${r.rtoSeconds.toFixed(3)} s`);
  if (r.reprotectSeconds !== undefined) lines.push(`  re-protected after the secondary's crash: ${r.reprotectSeconds.toFixed(3)} s; the primary acknowledged ${r.whileRestarting?.acknowledged ?? 0} writes meanwhile (longest wait ${((r.whileRestarting?.longestWaitSeconds ?? 0) * 1000).toFixed(0)} ms)`);
  lines.push(`  ledger: ${r.ledger.acknowledged} acknowledged, ${r.ledger.verified} verified, ${r.ledger.missing.length} missing, ${r.ledger.wrong.length} wrong`);
  return lines.join('\n');
}
