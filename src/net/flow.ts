/** What InFlight pauses and resumes: a socket or a stream socket. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/**
 * Back-pressure bookkeeping for one direction of a stream: bytes handed to a WebSocket's
 * send() whose callbacks have not fired yet. Above `high` the source is paused; it is resumed
 * once the sink has drained below `low`. This bounds what any one stream can buffer. (The
 * source itself, not two closures over it: one of these per direction of every open stream.)
 */
export class InFlight {
  #bytes = 0;
  #paused = false;

  constructor(
    private readonly high: number,
    private readonly low: number,
    private readonly source: Pausable,
  ) {}

  get bytes(): number {
    return this.#bytes;
  }

  /** Account for `n` bytes just sent; pauses the source when over the high-water mark. */
  add(n: number): void {
    this.#bytes += n;
    if (!this.#paused && this.#bytes >= this.high) {
      this.#paused = true;
      this.source.pause();
    }
  }

  /** The send of `n` bytes completed; resumes the source when below the low-water mark. */
  done(n: number): void {
    this.#bytes -= n;
    if (this.#paused && this.#bytes <= this.low) {
      this.#paused = false;
      this.source.resume();
    }
  }
}

/**
 * Default high-water mark per direction of a stream: bytes handed to a socket and not yet in
 * the kernel. It is not the stream's window (the kernel's TCP buffers are), so it does not cap
 * throughput over long round trips; it bounds how much one stream moves per event-loop turn.
 * Measured with 100 streams flat out through one hub (bench scenario 5): at 1 MiB a turn took
 * 250 ms, most streams got nothing for seconds and new connections waited 13 s for the hub;
 * at 64 KiB turns take 50-70 ms, every stream moves and single-stream throughput is within noise.
 */
export const defaultHighWaterMark = 64 * 1024;
