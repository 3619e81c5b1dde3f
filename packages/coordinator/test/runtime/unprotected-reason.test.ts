import { describe, expect, test } from 'vitest';
import { unprotectedReason } from '../../src/runtime/unprotected-reason.js';
import type { ProtectedNodeStatus } from '../../src/runtime/protected-node.js';

/** A status as a node serves it; each case changes what makes it unprotected. */
function status(o: Partial<Omit<ProtectedNodeStatus, 'reason'>> = {}): Omit<ProtectedNodeStatus, 'reason'> {
  return {
    nodeId: 'a',
    role: 'primary',
    state: 'unprotected',
    mode: 'colo',
    epoch: 1,
    protected: false,
    blackhole: false,
    peer: null,
    listening: 'ws://127.0.0.1:7800',
    service: { host: '127.0.0.1', port: 6380 },
    lastCheckpoint: null,
    checkpoints: {},
    output: null,
    failovers: 0,
    lastError: null,
    sync: null,
    arbiter: { kind: 'local', where: 'unix:/x', reachable: true, pending: null, lastDecision: null, lastError: null },
    version: '0.0.0',
    ...o,
  };
}

describe('why a node is not protected (colo status, GET /status reason)', () => {
  test.each([
    ['protected: no reason', status({ protected: true, state: 'protected.idle' }), true, null],
    ['a primary alone', status(), true, /^waiting for a secondary \(none attached\)$/],
    ['a primary that lost its secondary', status({ lastError: { code: 'COLO_PEER_LOST', message: 'heartbeat timeout' } }), true, /waiting for a secondary.*the last one was lost: heartbeat timeout \(COLO_PEER_LOST\)/],
    ['a primary synchronising', status({ peer: 'b@x', state: 'syncing.precopy', sync: { round: 1, pagesSent: 10, totalPages: 100, bytesSent: 40960, seconds: 1 } }), true, /^synchronising a secondary: pre-copy round 1, 10 of 100 pages$/],
    ['a promoted node not serving yet', status({ service: null }), false, /^promoted, opening the client service$/],
    ['waiting for an unreachable arbiter', status({ arbiter: { kind: 'etcd', where: 'x', reachable: false, pending: 'continue', lastDecision: null, lastError: { code: 'ARBITER_UNREACHABLE', message: 'no' } } as ProtectedNodeStatus['arbiter'] }), true, /waiting for the arbiter's decision \(continue\), output held: the arbiter is unreachable \(ARBITER_UNREACHABLE\)/],
    ['fenced', status({ role: 'fenced', lastError: { code: 'COLO_FENCED', message: 'epoch 3 seen' } }), true, /^fenced: another node won a newer epoch.*COLO_FENCED/],
    ['halted', status({ role: 'halted', lastError: { code: 'COLO_NOT_SYNCHRONISED', message: 'lost the primary first' } }), true, /^stopped acting: lost the primary first/],
    ['a secondary joining', status({ role: 'secondary', state: 'syncing.connecting' }), false, /^starting: joining the primary$/],
    ['a secondary dialing a primary not up yet', status({ role: 'secondary', state: 'not-started' }), false, /^starting: joining the primary$/],
    ['a secondary receiving the synchronisation', status({ role: 'secondary', state: 'syncing.receiving' }), false, /^receiving the initial synchronisation/],
    ['blackhole', status({ blackhole: true }), true, /^blackhole mode/],
  ])('%s', (_name, s, serving, expected) => {
    const reason = unprotectedReason(s, serving);
    if (expected === null) expect(reason).toBe(null);
    else expect(reason).toMatch(expected);
  });
});
