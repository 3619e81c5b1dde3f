import { primaryMachine, type PrimaryEffects } from './primary.js';
import { secondaryMachine, type SecondaryEffects } from './secondary.js';

/** The primary machine with its named actions bound to real effects (the node runtime, or a test recorder). */
export function bindPrimaryEffects(effects: PrimaryEffects) {
  return primaryMachine.provide({
    actions: {
      startLiveMigration: ({ context }) => effects.startLiveMigration(context),
      sendNewCheckpoint: ({ context }) => effects.sendNewCheckpoint(context),
      suspendAndSendCheckpoint: ({ context }, p) => effects.suspendAndSendCheckpoint(context, p.secondaryDirty),
      resumeGuest: ({ context }) => effects.resumeGuest(context),
      checkpointCompleted: ({ context }) => {
        if (context.current) effects.checkpointCompleted(context, context.current);
      },
      protectionStarted: ({ context }) => effects.protectionStarted(context),
      dropSecondary: ({ context }, p) => effects.dropSecondary(context, p.error),
      refuseRequest: ({ context }, p) => effects.refuseRequest(context, p.reason),
      stepDown: ({ context }, p) => effects.stepDown(context, p.error),
      decide: ({ context }) => effects.decide(context),
      continueAlone: ({ context }) => effects.continueAlone(context),
    },
  });
}

export function bindSecondaryEffects(effects: SecondaryEffects) {
  return secondaryMachine.provide({
    actions: {
      suspendAndReportDirty: ({ context }) => effects.suspendAndReportDirty(context),
      applyCheckpoint: ({ context }) => effects.applyCheckpoint(context),
      readyAndResume: ({ context }) => effects.readyAndResume(context),
      acknowledge: ({ context }) => effects.acknowledge(context),
      discardCheckpoint: ({ context }) => effects.discardCheckpoint(context),
      abandonPrimary: ({ context }, p) => effects.abandonPrimary(context, p.error),
      decide: ({ context }) => effects.decide(context),
      promote: ({ context }) => effects.promote(context),
      standDown: ({ context }, p) => effects.standDown(context, p.error),
      halt: ({ context }, p) => effects.halt(context, p.error),
      refuseFailover: ({ context }, p) => effects.refuseFailover(context, p.error),
    },
  });
}
