/**
 * Back-pressure bookkeeping for one direction of a stream: bytes handed to a WebSocket's
 * send() whose callbacks have not fired yet. Above `high` the source is paused; it is resumed
 * once the sink has drained below `low`. This bounds what any one stream can buffer.
 */
export class InFlight {
  #bytes = 0;
  #paused = false;

  constructor(
    private readonly high: number,
    private readonly low: number,
    private readonly pause: () => void,
    private readonly resume: () => void,
  ) {}

  get bytes(): number {
    return this.#bytes;
  }

  /** Account for `n` bytes just sent; pauses the source when over the high-water mark. */
  add(n: number): void {
    this.#bytes += n;
    if (!this.#paused && this.#bytes >= this.high) {
      this.#paused = true;
      this.pause();
    }
  }

  /** The send of `n` bytes completed; resumes the source when below the low-water mark. */
  done(n: number): void {
    this.#bytes -= n;
    if (this.#paused && this.#bytes <= this.low) {
      this.#paused = false;
      this.resume();
    }
  }
}

/** Default high-water mark per direction of a stream (bytes in flight). */
export const defaultHighWaterMark = 1024 * 1024;
