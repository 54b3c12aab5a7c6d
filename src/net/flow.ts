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

/**
 * Bytes waiting in a local socket's write buffer before its stream stops delivering (see
 * `TickWriter`): two carrier messages' worth of one stream (each carries at most 64 KiB of it).
 */
const localWriteBound = 128 * 1024;

/** What `TickWriter` writes to: a TCP socket, or stdout for `dstream connect`. */
export interface CorkableWritable {
  cork(): void;
  uncork(): void;
  write(chunk: Buffer, callback?: (error?: Error | null) => void): boolean;
  readonly writableLength: number;
}

/**
 * Writes to a local socket, corked until the next tick, so that what arrives in one turn of
 * the event loop goes out in one system call. A carrier message brings one stream up to 64 KiB
 * in 16 KiB frames, each delivered as its own message: written one by one they were four
 * writes (and four trips through the kernel's loopback) where the per-stream WebSocket carrier
 * made one (bench scenario 10, bulk upload of 128 MiB under strace: the agent made 8,818 writes
 * of 15 KiB on average against 2,617 of 51 KiB).
 *
 * `write` answers whether the writer should stop: a corked socket reports itself full as soon
 * as its high-water mark (16 KiB) is buffered, which one carrier message passes, so the
 * answer is true only once `bound` bytes wait; the socket's 'drain' then follows as usual (a
 * write already returned false).
 */
export class TickWriter {
  #corked = false;

  constructor(
    private readonly socket: CorkableWritable,
    private readonly bound: number = localWriteBound,
  ) {}

  /** Write `data`; true when the writer should wait for the socket's 'drain'. */
  write(data: Buffer, callback?: (error?: Error | null) => void): boolean {
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      process.nextTick(TickWriter.#uncork, this);
    }
    return !this.socket.write(data, callback) && this.socket.writableLength >= this.bound;
  }

  static #uncork(this: void, writer: TickWriter): void {
    writer.#corked = false;
    writer.socket.uncork();
  }
}
