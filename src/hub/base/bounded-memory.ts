/**
 * A map that forgets its oldest entries past a bound (insertion order; a refreshed entry is
 * the newest). What the hub remembers about streams that are not running (spent tickets,
 * suspended streams) is kept in these, so that no peer can grow it without limit; so are the
 * registry records the SQLite registry read lately.
 */
export class BoundedMemory<V> {
  readonly #entries = new Map<string, V>();

  constructor(
    private readonly bound: number,
    /** Called with an entry forgotten for the bound (not for delete()). */
    private readonly onForget: (value: V) => void = () => undefined,
  ) {}

  get(key: string): V | undefined {
    return this.#entries.get(key);
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.bound) {
      const oldest = this.#entries.entries().next();
      if (!oldest.done) {
        this.#entries.delete(oldest.value[0]);
        this.onForget(oldest.value[1]);
      }
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  values(): IterableIterator<V> {
    return this.#entries.values();
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
