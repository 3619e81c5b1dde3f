/** A tiny typed listener set: add() returns the function that removes the listener. */
export class Listeners<A extends unknown[]> {
  readonly #set = new Set<(...args: A) => void>();

  add(listener: (...args: A) => void): () => void {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }

  emit(...args: A): void {
    // Per client reply on the primary: no copy of the set when there is nothing (or one thing) to call.
    const n = this.#set.size;
    if (n === 0) return;
    if (n === 1) {
      for (const l of this.#set) l(...args);
      return;
    }
    for (const l of [...this.#set]) l(...args);
  }

  get size(): number {
    return this.#set.size;
  }
}
