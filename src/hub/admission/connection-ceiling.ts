import type { Logger } from '../../log/logger.js';

/** How often, at most, the ceiling's log line is written. */
const logEveryMs = 10_000;

/**
 * The per-node ceiling on open connections (--max-connections): set below the descriptor
 * limit, so that a flood is refused with a log line here instead of accept() failing with
 * EMFILE, which would also starve the hub's own files and outgoing sockets.
 */
export class ConnectionCeiling {
  #refused = 0;
  #loggedAt = 0;

  constructor(
    readonly max: number,
    private readonly logger: Logger,
  ) {}

  /** Whether one more connection fits beside `open`; counts and logs the ones that do not. */
  admit(open: number, now = Date.now()): boolean {
    if (open < this.max) return true;
    this.#refused++;
    // One line per 10 s at most, with the count: a flood must not become a flood of lines.
    if (now - this.#loggedAt >= logEveryMs) {
      this.logger.warn('connection refused: the hub holds --max-connections connections', {
        limit: this.max,
        refused: this.#refused,
      });
      this.#loggedAt = now;
      this.#refused = 0;
    }
    return false;
  }
}
