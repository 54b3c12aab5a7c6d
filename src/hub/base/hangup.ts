/**
 * What the hub's stream initiation needs of a cancellation: an AbortSignal's `aborted` and its
 * 'abort' listeners, nothing else. An AbortSignal is one; so is a `Hangup`.
 */
export interface AbortLike {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * The caller of a stream initiation hung up (its POST's response closed, or its substream did)
 * while the device was asked: a one-shot cancellation, its own signal.
 *
 * Why not an AbortController: its signal is an EventTarget, and one made per stream with an
 * 'abort' listener added and removed twice (the offer's, the wait's) took about 7 µs here
 * against 0.1-0.3 µs for this (a loop of 200,000 each), 3-4% of the hub's CPU per stream at
 * bench scenario 10's setup rate (`perf record` of the hub, 2026-12-06, evening).
 */
export class Hangup implements AbortLike {
  #aborted = false;
  /** Made only if something listens. */
  #listeners: Set<() => void> | undefined;

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Call `listener` once, when the caller hangs up (never if it already has, as an AbortSignal). */
  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.#aborted) (this.#listeners ??= new Set()).add(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.#listeners?.delete(listener);
  }

  /** The caller hung up: every listener runs once, in the order added. Idempotent. */
  hangUp(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }
}
