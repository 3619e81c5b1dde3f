import type { Domain } from '@colo/domain';

export interface SuspendHooks {
  /** Runs synchronously right before the guest is suspended: the proxy closes its input gate here. */
  beforeSuspend(): void;
  /** Runs right after the guest resumed: the proxy may deliver input again. */
  afterResume(): void;
}

/**
 * The guest as the replication engine sees it, with the output proxy told of every suspend and resume. The
 * proxy must know the exact last input the guest processed before a checkpoint's suspension (that input is in
 * the checkpoint; later input is not), so it must close its gate before the suspension, not after.
 * Every other member (including the simulated guest's extras) passes through unchanged.
 */
export function hookSuspendResume<D extends Domain>(domain: D, hooks: SuspendHooks): D {
  const suspend = async () => {
    hooks.beforeSuspend();
    await domain.suspend();
  };
  const resume = async () => {
    await domain.resume();
    hooks.afterResume();
  };
  return new Proxy(domain, {
    get(target, prop) {
      if (prop === 'suspend') return suspend;
      if (prop === 'resume') return resume;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
