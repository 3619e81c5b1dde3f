import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import type { NodeRole } from '../statechart/types.js';
import type { NodeContext } from './context.js';

export type DecisionEvent = { type: 'DECISION_WON'; epoch: number } | { type: 'DECISION_LOST'; error: CoordinatorError };

/**
 * After losing the peer: asks the arbiter for the epoch after `epoch` (the one the pair shared) and tells the
 * role's machine the answer (`send`). The machine waits in `deciding` for as long as that takes; an answer that
 * comes after the node stopped or changed role is dropped. The node's epoch is the one it won.
 */
export function decide(ctx: NodeContext, role: NodeRole, epoch: number, send: (e: DecisionEvent) => void): void {
  const tell = (e: DecisionEvent) => {
    if (!ctx.stopped && ctx.role === role) send(e);
  };
  ctx.arbitration.decide(ctx.o.nodeId, role, epoch).then(
    (d) => {
      if (!d) return;
      if (d.won) {
        ctx.epoch = Math.max(ctx.epoch, d.epoch);
        tell({ type: 'DECISION_WON', epoch: d.epoch });
      } else {
        const holder = d.current ? `${d.current.holder} holds epoch ${d.current.epoch}` : 'the pair has no record';
        tell({
          type: 'DECISION_LOST',
          error: new CoordinatorError(
            CoordinatorErrorCode.DECISION_LOST,
            `the arbiter gave epoch ${epoch + 1} to the other node (${holder}): this node ${role === 'primary' ? 'stops serving' : 'discards its replica'}`,
          ),
        });
      }
    },
    (e: unknown) => ctx.roleLogger().error({ err: e }, 'arbiter request failed for good: staying in deciding'),
  );
}
