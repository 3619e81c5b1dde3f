import { CoordinatorError, CoordinatorErrorCode } from './errors.js';

/**
 * Epochs: a generation number of the pair that rises at every promotion. It travels in every hello, so a
 * former primary that was cut off (and still believes it is primary) is recognised as stale by everyone who
 * has seen a later promotion.
 */

/** The epoch a node takes when it promotes itself: one above everything it has seen. */
export function nextEpoch(highestSeen: number): number {
  return highestSeen + 1;
}

/**
 * A secondary refuses a primary whose epoch is lower than one it has already seen: that primary was replaced
 * by a promotion it does not know about. Equal or higher is fine (the secondary adopts it).
 */
export function checkPrimaryEpoch(primaryEpoch: number, highestSeen: number): void {
  if (!Number.isSafeInteger(primaryEpoch) || primaryEpoch < 0) {
    throw new CoordinatorError(CoordinatorErrorCode.STALE_EPOCH, `primary announced an invalid epoch ${primaryEpoch}`);
  }
  if (primaryEpoch < highestSeen) {
    throw new CoordinatorError(
      CoordinatorErrorCode.STALE_EPOCH,
      `primary is at epoch ${primaryEpoch} but this node has seen epoch ${highestSeen}: it is a stale former primary; ` +
        'point the secondary at the current primary',
    );
  }
}

/** A node acting as primary that meets a higher epoch must step down: somebody else was promoted after it. */
export function primaryMustStepDown(ownEpoch: number, peerEpoch: number): boolean {
  return peerEpoch > ownEpoch;
}
