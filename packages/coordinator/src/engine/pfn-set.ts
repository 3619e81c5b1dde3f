/**
 * Union of two ascending pfn lists (the primary's dirty log and the secondary's CHECKPOINT_DIRTY_PFN_LIST),
 * ascending and without duplicates. Linear: checkpoints can carry tens of thousands of pages.
 */
export function unionAscending(a: ArrayLike<number>, b: ArrayLike<number>): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  let last = -1;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i]! <= b[j]!) ? a[i++]! : b[j++]!;
    if (x !== last) out.push(x);
    last = x;
  }
  return out;
}

/** Whether a list is strictly ascending (the order Xen writes dirty pfn lists in). */
export function isStrictlyAscending(pfns: ArrayLike<number>): boolean {
  for (let i = 1; i < pfns.length; i++) if (pfns[i]! <= pfns[i - 1]!) return false;
  return true;
}
