import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, test } from 'vitest';
import { MemoryArbiter } from '../../src/arbiter/none.js';
import { PAIR_HOLDER, type EpochExpectation, type EpochRecord } from '../../src/arbiter/arbiter.js';
import { ArbiterError, ArbiterErrorCode } from '../../src/arbiter/errors.js';
import { CoordinatorErrorCode } from '../../src/errors.js';
import { NodeStateFile, nodeStatePath, readNodeState } from '../../src/runtime/node-state.js';
import { chooseStartRole, claimPair, decideStartRole } from '../../src/runtime/start-role.js';

/** node.role auto (issue 24 item 2): the role at start from the arbiter's record and the node's persisted state. */
const dirs: string[] = [];
function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'colo-state-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const quiet = pino({ level: 'silent' });

describe('chooseStartRole: every path', () => {
  test('a new pair (no record, no state): the arbiter must pick', () => {
    expect(chooseStartRole('a', null, null)).toBe('ask');
  });
  test('no record but a persisted state: the pair\'s record was lost, refused for the operator', () => {
    expect(() => chooseStartRole('a', null, { node: 'a', role: 'primary', epoch: 4 })).toThrow(
      expect.objectContaining({ code: CoordinatorErrorCode.HISTORY_LOST }),
    );
  });
  test('this node held the epoch alone: primary again (its guest ended with it), from the highest epoch known', () => {
    expect(chooseStartRole('a', { epoch: 3, holder: 'a' }, { node: 'a', role: 'primary', epoch: 3 })).toMatchObject({ role: 'primary', epoch: 3, why: 'held-alone' });
    expect(chooseStartRole('a', { epoch: 3, holder: 'a' }, null)).toMatchObject({ role: 'primary', epoch: 3 });
  });
  test('the protected pair holds the epoch: secondary, whatever role this node had (a restarted primary too)', () => {
    for (const role of ['primary', 'secondary'] as const) {
      expect(chooseStartRole('a', { epoch: 2, holder: PAIR_HOLDER }, { node: 'a', role, epoch: 2 })).toMatchObject({ role: 'secondary', epoch: 2, why: 'pair-protected' });
    }
  });
  test('the other node holds the epoch: secondary; the epoch known is the higher of record and state', () => {
    expect(chooseStartRole('a', { epoch: 5, holder: 'b' }, { node: 'a', role: 'primary', epoch: 4 })).toMatchObject({ role: 'secondary', epoch: 5, why: 'other-holds' });
    expect(chooseStartRole('a', { epoch: 5, holder: 'b' }, { node: 'a', role: 'primary', epoch: 7 })).toMatchObject({ epoch: 7 });
  });
});

/** A MemoryArbiter that fails its first `failures` requests as an unreachable one does. */
class FlakyArbiter extends MemoryArbiter {
  constructor(private failures: number) {
    super();
  }
  requests = 0;
  override async read(): Promise<EpochRecord | null> {
    this.requests++;
    if (this.failures-- > 0) throw new ArbiterError(ArbiterErrorCode.UNREACHABLE, 'down');
    return super.read();
  }
  override async compareAndSwap(expect: EpochExpectation, next: EpochRecord) {
    this.requests++;
    if (this.failures-- > 0) throw new ArbiterError(ArbiterErrorCode.UNREACHABLE, 'down');
    return super.compareAndSwap(expect, next);
  }
}

describe('decideStartRole', () => {
  test('two nodes of a new pair starting at once: exactly one creates the record and is primary', async () => {
    for (let round = 0; round < 20; round++) {
      const arbiter = new MemoryArbiter();
      const [a, b] = await Promise.all([
        decideStartRole({ nodeId: 'a', arbiter, stateDir: stateDir(), logger: quiet }),
        decideStartRole({ nodeId: 'b', arbiter, stateDir: stateDir(), logger: quiet }),
      ]);
      expect([a.role, b.role].sort()).toEqual(['primary', 'secondary']);
      const primary = a.role === 'primary' ? 'a' : 'b';
      expect(arbiter.peek()).toEqual({ epoch: 0, holder: primary });
      expect((a.role === 'secondary' ? a : b).why).toBe('other-holds');
    }
  });

  test('an arbiter that does not answer yet is asked again; nothing is guessed meanwhile', async () => {
    const arbiter = new FlakyArbiter(4);
    arbiter.reset({ epoch: 6, holder: PAIR_HOLDER });
    const d = await decideStartRole({ nodeId: 'a', arbiter, stateDir: stateDir(), logger: quiet });
    expect(d).toMatchObject({ role: 'secondary', epoch: 6 });
    expect(arbiter.requests).toBe(5);
  });

  test('stopped while the arbiter does not answer: COLO_STOPPED, promptly', async () => {
    const arbiter = new FlakyArbiter(Number.MAX_SAFE_INTEGER);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    const started = Date.now();
    await expect(decideStartRole({ nodeId: 'a', arbiter, stateDir: stateDir(), logger: quiet, signal: abort.signal })).rejects.toMatchObject({ code: CoordinatorErrorCode.STOPPED });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test('a state directory with history and an arbiter without a record: COLO_PAIR_HISTORY_LOST, and no record is created', async () => {
    const dir = stateDir();
    new NodeStateFile(dir, 'a').record('primary', 3);
    const arbiter = new MemoryArbiter();
    await expect(decideStartRole({ nodeId: 'a', arbiter, stateDir: dir, logger: quiet })).rejects.toMatchObject({ code: CoordinatorErrorCode.HISTORY_LOST });
    expect(arbiter.peek()).toBeNull();
  });

  test('a state that is not this node\'s is COLO_STATE_CORRUPT before the arbiter is asked', async () => {
    const dir = stateDir();
    new NodeStateFile(dir, 'b').record('secondary', 1);
    const arbiter = new FlakyArbiter(0);
    await expect(decideStartRole({ nodeId: 'a', arbiter, stateDir: dir, logger: quiet })).rejects.toMatchObject({ code: CoordinatorErrorCode.STATE_CORRUPT });
    expect(arbiter.requests).toBe(0);
  });
});

describe('the node state file', () => {
  test('round trip; written only when the role or the epoch changes; the epoch never goes down', () => {
    const dir = stateDir();
    expect(readNodeState(dir, 'a')).toBeNull();
    const f = new NodeStateFile(dir, 'a');
    f.record('secondary', 2);
    expect(readNodeState(dir, 'a')).toEqual({ node: 'a', role: 'secondary', epoch: 2 });
    const written = readFileSync(nodeStatePath(dir), 'utf8');
    f.record('secondary', 2);
    expect(readFileSync(nodeStatePath(dir), 'utf8')).toBe(written);
    f.record('primary', 1);
    expect(readNodeState(dir, 'a')).toEqual({ node: 'a', role: 'primary', epoch: 2 });
    expect(existsSync(`${nodeStatePath(dir)}.tmp`)).toBe(false);
  });

  test('a missing directory is created; an unwritable path throws the file system\'s error', () => {
    const dir = join(stateDir(), 'sub', 'dir');
    new NodeStateFile(dir, 'a').record('primary', 0);
    expect(readNodeState(dir, 'a')).toMatchObject({ epoch: 0 });
    const file = join(stateDir(), 'a-file');
    writeFileSync(file, '');
    expect(() => new NodeStateFile(join(file, 'below'), 'a').record('primary', 0)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^E/) }));
  });

  test('anything but a state of this node is COLO_STATE_CORRUPT', () => {
    const cases = ['', 'not json', '{}', '{"version":1,"node":"a","role":"boss","epoch":1}', '{"version":1,"node":"a","role":"primary","epoch":-1}', '{"version":2,"node":"a","role":"primary","epoch":1}', '{"version":1,"node":"b","role":"primary","epoch":1}'];
    for (const text of cases) {
      const dir = stateDir();
      writeFileSync(nodeStatePath(dir), text);
      expect(() => readNodeState(dir, 'a'), text).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.STATE_CORRUPT }));
    }
  });
});

describe('claimPair: an operator gives the pair\'s next epoch to one node', () => {
  test('from the protected pair, the other node or no record: the next epoch above the record and the state, this node\'s alone', async () => {
    const cases = [
      { record: { epoch: 4, holder: PAIR_HOLDER }, state: 2, next: 5 },
      { record: { epoch: 4, holder: 'b' }, state: 7, next: 8 },
      { record: null, state: 3, next: 4 },
      { record: null, state: undefined, next: 0 },
    ];
    for (const c of cases) {
      const arbiter = new MemoryArbiter();
      arbiter.reset(c.record);
      const dir = stateDir();
      if (c.state !== undefined) new NodeStateFile(dir, 'a').record('secondary', c.state);
      const r = await claimPair({ nodeId: 'a', arbiter, stateDir: dir });
      expect(r).toEqual({ before: c.record, after: { epoch: c.next, holder: 'a' }, claimed: true });
      // The node then starts as primary.
      expect(await decideStartRole({ nodeId: 'a', arbiter, stateDir: dir, logger: quiet })).toMatchObject({ role: 'primary', why: 'held-alone' });
      expect(await decideStartRole({ nodeId: 'b', arbiter, stateDir: stateDir(), logger: quiet })).toMatchObject({ role: 'secondary' });
    }
  });

  test('already this node\'s: nothing written; a record that changes between the read and the swap is not overwritten', async () => {
    const mine = new MemoryArbiter();
    mine.reset({ epoch: 2, holder: 'a' });
    expect(await claimPair({ nodeId: 'a', arbiter: mine })).toMatchObject({ claimed: true, after: { epoch: 2, holder: 'a' } });
    class Racing extends MemoryArbiter {
      override async read() {
        const r = await super.read();
        this.reset({ epoch: 9, holder: 'b' }); // the other node won a decision meanwhile
        return r;
      }
    }
    const racing = new Racing();
    racing.reset({ epoch: 8, holder: PAIR_HOLDER });
    expect(await claimPair({ nodeId: 'a', arbiter: racing })).toEqual({ before: { epoch: 8, holder: PAIR_HOLDER }, after: { epoch: 9, holder: 'b' }, claimed: false });
  });
});
