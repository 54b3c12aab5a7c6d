/**
 * When the receiving end of a resumable stream acknowledges (`--resume`). Often
 * enough that the sender's replay buffer stays small on a healthy link: after `everyBytes`
 * unacknowledged bytes at once, else once the caller's idle timer fires (`due`). Rarely enough
 * that acknowledgements cost next to nothing: one small frame per `everyBytes`.
 */
export class AckTracker {
  #received = 0;
  #acked = 0;

  constructor(readonly everyBytes: number) {
    if (!Number.isSafeInteger(everyBytes) || everyBytes <= 0)
      throw new RangeError(`everyBytes must be a positive integer, not ${everyBytes}`);
  }

  /** Payload bytes received since the stream began (what a resume frame says). */
  get received(): number {
    return this.#received;
  }

  /** Count received bytes; true when an acknowledgement should go now. */
  onData(bytes: number): boolean {
    this.#received += bytes;
    return this.#received - this.#acked >= this.everyBytes;
  }

  /** Whether anything is unacknowledged (for the idle timer). */
  get due(): boolean {
    return this.#received > this.#acked;
  }

  /** The offset to acknowledge, recorded as sent. */
  take(): number {
    this.#acked = this.#received;
    return this.#acked;
  }
}
