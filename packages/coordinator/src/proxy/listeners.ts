/** A tiny typed listener set: add() returns the function that removes the listener. */
export class Listeners<A extends unknown[]> {
  readonly #set = new Set<(...args: A) => void>();

  add(listener: (...args: A) => void): () => void {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }

  emit(...args: A): void {
    for (const l of [...this.#set]) l(...args);
  }

  get size(): number {
    return this.#set.size;
  }
}
