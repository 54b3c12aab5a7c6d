/**
 * What one process keeps for replay across all its resumable streams (their ReplayBuffers).
 * Each stream keeps at most its own bound (8 MiB); this bounds their sum, so that many streams
 * suspended at once, each with a writer still pushing, cannot take the machine's memory: past
 * it no stream reads more from its local connection (its writer is held back by TCP), and the
 * streams waiting are woken as acknowledgements give memory back. Nothing is dropped.
 */
export class ReplayBudget {
  #used = 0;
  /** Streams that stopped reading for the budget, woken (in order) once it has room. */
  readonly #waiting = new Set<() => void>();

  constructor(
    /** Bytes in all (default defaultReplayBudgetBytes). */
    readonly limit: number = defaultReplayBudgetBytes,
  ) {
    if (!Number.isSafeInteger(limit) || limit <= 0)
      throw new RangeError(`a replay budget must be a positive integer, not ${limit}`);
  }

  /** Bytes held for replay by all streams now. */
  get used(): number {
    return this.#used;
  }

  /** True while no stream may read more. */
  get full(): boolean {
    return this.#used >= this.limit;
  }

  /** A stream kept `n` more bytes (one read may overshoot; as a stream's highWaterMark). */
  take(n: number): void {
    this.#used += n;
  }

  /** A stream let go of `n` bytes (acknowledged, or the stream ended). */
  give(n: number): void {
    if (n <= 0) return;
    this.#used = Math.max(0, this.#used - n);
    if (this.full || this.#waiting.size === 0) return;
    const woken = [...this.#waiting];
    this.#waiting.clear();
    for (const wake of woken) wake();
  }

  /** Call `wake` once there is room again (a stream that stopped reading for the budget). */
  wait(wake: () => void): void {
    this.#waiting.add(wake);
  }

  /** A stream that ended no longer waits. */
  forget(wake: () => void): void {
    this.#waiting.delete(wake);
  }
}

/**
 * The default process-wide bound: 16 streams' worth of their own 8 MiB bound. A process with
 * more streams than that, all holding full replay buffers, reads more slowly rather than
 * growing; one with fewer never notices it.
 */
export const defaultReplayBudgetBytes = 128 * 1024 * 1024;
