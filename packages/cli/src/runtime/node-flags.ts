/**
 * V8 flags a `colo node` process should run with, and the helper that adds them to a command line.
 *
 * Why: a node's JavaScript heap is small (~11 MiB live) while it moves hundreds of MiB of Buffers per second.
 * V8 sizes the old generation's limit from the live heap (~26 MiB here) and starts marking as soon as the room
 * left is no larger than the young generation (16 MiB semi-spaces once grown): on a replicating secondary that
 * was true right after every mark-compact, so it ran them back to back, every 20-30 ms, 2-12 ms each, and they
 * landed inside checkpoint pauses. A floor under the old generation's limit ends the loop; what remains are
 * the collections that external (Buffer) memory asks for. Measured in docs/performance.md (Checkpoints,
 * fourth round).
 *
 * V8 reads these flags when the heap is set up: they must be on the command line (NODE_OPTIONS refuses them,
 * and v8.setFlagsFromString is too late for the main isolate).
 */
export const NODE_HEAP_FLAGS: readonly string[] = ['--initial-old-space-size=128'];

/** `execArgv` plus the heap flags it does not already set (an operator's own value wins). */
export function withNodeHeapFlags(execArgv: readonly string[]): string[] {
  // V8 accepts a flag with '_' or '-' between words.
  const nameOf = (arg: string) => arg.split('=')[0]!.replaceAll('_', '-');
  const has = (flag: string) => execArgv.some((a) => nameOf(a) === nameOf(flag));
  return [...execArgv, ...NODE_HEAP_FLAGS.filter((f) => !has(f))];
}

/** Whether this process runs with the heap flags (reported in the node's start line). */
export function hasNodeHeapFlags(execArgv: readonly string[] = process.execArgv): boolean {
  return withNodeHeapFlags(execArgv).length === execArgv.length;
}
