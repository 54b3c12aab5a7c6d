/**
 * What a stream setup needs of a cancellation (the hub's initiation, an end's opening): an
 * AbortSignal's `aborted` and its 'abort' listeners, nothing else. An AbortSignal is one; so is
 * a `Hangup`.
 */
export interface AbortLike {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * One side of a stream setup left before it was done: the caller of a stream initiation hung
 * up while the device was asked (the hub), or the local connection closed while its stream was
 * being opened (an end). A one-shot cancellation, its own signal.
 *
 * Why not an AbortController: its signal, an EventTarget, took 4-6 µs to make here (Node 20)
 * and 6-8 µs with an 'abort' listener added and removed, against 0.1-0.3 µs for this (loops of
 * 200,000), and one was made per stream: in turns at bench scenario 10's setup rate, the hub's
 * CPU per stream went down a fifth without it and the proxy's a tenth (docs/benchmark.md).
 */
export class Hangup implements AbortLike {
  #aborted = false;
  /** Made only if something listens. */
  #listeners: Set<() => void> | undefined;

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Call `listener` once, at the hang-up (never if it came already, as an AbortSignal). */
  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.#aborted) (this.#listeners ??= new Set()).add(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.#listeners?.delete(listener);
  }

  /** The setup is abandoned: every listener runs once, in the order added. Idempotent. */
  hangUp(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }
}

/**
 * A real AbortSignal that aborts with `signal`, for what takes nothing else (`https`): made only
 * on such a path (a stream asked for with IoT Hub's POST, which costs a request anyway).
 */
export function abortSignalOf(signal: AbortLike): AbortSignal {
  if (signal instanceof AbortSignal) return signal;
  const controller = new AbortController();
  if (signal.aborted) controller.abort();
  else signal.addEventListener('abort', () => controller.abort());
  return controller.signal;
}

/** What an AbortSignal's `throwIfAborted()` throws (its default reason): an 'AbortError'. */
export function abortError(): DOMException {
  return new DOMException('This operation was aborted', 'AbortError');
}
