/**
 * The bytes one end of a resumable stream has sent and the other end has not yet acknowledged
 * (`--resume`; used by resumable-bridge.ts). Offsets count payload bytes from
 * the stream's start, so they survive any number of reconnections: after one, the peer says
 * how many bytes it has received and everything from there is sent again.
 *
 * Bounded: `push` reports when the buffer holds `capacity` bytes or more, and the caller pauses
 * its source (the local TCP socket) until acknowledgements bring it under `resumeBelow`.
 */
export class ReplayBuffer {
  /** Kept chunks from #head on; acknowledged ones before it are compacted away in batches. */
  #chunks: Buffer[] = [];
  #head = 0;
  /** Offset of the first byte of #chunks[#head]. */
  #acked = 0;
  #sent = 0;

  constructor(
    readonly capacity: number,
    /** Below this many buffered bytes a paused source may resume (default: half the capacity). */
    readonly resumeBelow: number = Math.floor(capacity / 2),
  ) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0)
      throw new RangeError(`replay capacity must be a positive integer, not ${capacity}`);
    if (resumeBelow < 0 || resumeBelow > capacity)
      throw new RangeError(`resumeBelow must be between 0 and the capacity (${capacity})`);
  }

  /** Bytes sent since the stream began. */
  get sent(): number {
    return this.#sent;
  }

  /** Bytes the peer has acknowledged: everything before this offset is gone from the buffer. */
  get acked(): number {
    return this.#acked;
  }

  /** Bytes held for replay. */
  get size(): number {
    return this.#sent - this.#acked;
  }

  /** True while the source should stay paused. */
  get full(): boolean {
    return this.size >= this.capacity;
  }

  /**
   * Keep a chunk that is being sent. Returns false when the buffer is now at or over capacity:
   * pause the source. (The chunk is kept either way; one chunk's overshoot is the bound's
   * slack, as with a stream's highWaterMark.)
   */
  push(chunk: Buffer): boolean {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#sent += chunk.length;
    }
    return !this.full;
  }

  /**
   * The peer has received everything before `offset` (cumulative). Acknowledgements never go
   * back, and never past what was sent: either is a protocol violation, reported as an error
   * for the caller to end the stream with. Returns true when a paused source may resume.
   */
  ack(offset: number): boolean {
    if (!Number.isSafeInteger(offset) || offset < this.#acked || offset > this.#sent)
      throw new ReplayOffsetError(
        `acknowledged offset ${offset} is outside ${this.#acked}..${this.#sent}`,
      );
    let drop = offset - this.#acked;
    while (drop > 0) {
      const head = this.#chunks[this.#head] as Buffer;
      if (head.length <= drop) {
        // Let go of the chunk now, not at the next compaction: until then the array would keep
        // up to a thousand acknowledged chunks (64 MiB of reads) alive per stream.
        this.#chunks[this.#head] = released;
        this.#head++;
        drop -= head.length;
      } else {
        // Keep the unacknowledged tail of the chunk (a view, not a copy).
        this.#chunks[this.#head] = head.subarray(drop);
        drop = 0;
      }
    }
    // Shifting an array is O(n) per chunk; dropping the acknowledged prefix in one slice once
    // it is half the array keeps acknowledgement O(1) amortised.
    if (this.#head > 1024 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
    this.#acked = offset;
    return this.size < this.resumeBelow;
  }

  /**
   * What to send again after a reconnection whose peer has received `offset` bytes: the
   * chunks from there to the end, in order (views of the kept chunks). The peer's count also
   * acknowledges everything before it.
   */
  replayFrom(offset: number): Buffer[] {
    this.ack(offset);
    return this.#chunks.slice(this.#head);
  }
}

/** What an acknowledged chunk's slot holds until the array is compacted. */
const released = Buffer.alloc(0);

/** An acknowledgement or resume offset that cannot be right: the stream must end. */
export class ReplayOffsetError extends Error {
  override readonly name = 'ReplayOffsetError';
}
