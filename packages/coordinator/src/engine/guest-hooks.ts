/**
 * What the node is told of every suspend and resume of its guest, whoever makes it (an engine, a takeover, a
 * step-down): the output proxy must know the last input the guest processed before a checkpoint's suspension
 * (that input is in the checkpoint, later input is not), so it closes its input gate in `suspending`, which runs
 * synchronously right before the suspension; `resumed` runs right after the guest runs again.
 */
export interface GuestHooks {
  /**
   * `linkIndex`: the index on the current replication link (0 = the initial synchronisation) of the checkpoint
   * this suspension takes; undefined when it takes none (a step-down, a failed promotion).
   */
  suspending(linkIndex: number | undefined): void;
  resumed(): void;
}
