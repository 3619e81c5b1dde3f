import type { ProtectedNodeStatus } from './protected-node.js';

/**
 * Why a node does not protect the guest now, in an operator's words, from its status alone (null when it does):
 * what `colo status` prints and GET /status carries as `reason`, so that "UNPROTECTED" always comes with a cause
 * and what happens next. A pure function of the status, as the status is of the node's facts.
 */
export function unprotectedReason(s: Omit<ProtectedNodeStatus, 'reason'>, serving: boolean): string | null {
  if (s.protected) return null;
  const error = s.lastError ? `: ${s.lastError.message} (${s.lastError.code})` : '';
  if (s.role === 'fenced') return `fenced: another node won a newer epoch; this one no longer acts${error}`;
  if (s.role === 'halted') return `stopped acting${error}`;
  if (s.blackhole) return 'blackhole mode: checkpoints go nowhere, nothing would take over';
  if (s.arbiter.pending) {
    return `waiting for the arbiter's decision (${s.arbiter.pending}), output held${s.arbiter.reachable ? '' : `: the arbiter is unreachable${s.arbiter.lastError ? ` (${s.arbiter.lastError.code})` : ''}`}`;
  }
  if (s.role === 'primary') {
    if (!serving) return 'promoted, opening the client service';
    if (s.sync) return `synchronising a secondary: pre-copy round ${s.sync.round}, ${s.sync.pagesSent} of ${s.sync.totalPages} pages`;
    if (s.peer) return 'a secondary is attached: synchronising it';
    return `waiting for a secondary (none attached)${s.lastError ? `; the last one was lost${error}` : ''}`;
  }
  // Before its machine starts (dialing, retrying a primary not up yet) and while the links open.
  if (s.state === 'not-started' || s.state.startsWith('syncing.connecting')) return 'starting: joining the primary';
  if (s.state.startsWith('syncing')) return 'receiving the initial synchronisation from the primary';
  return `starting (${s.state})`;
}
