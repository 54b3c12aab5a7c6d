import type { LogFields, Logger, LogLevel } from './logger.js';

/**
 * Log lines that an outsider can cause at will (refused subscriptions, connections over a
 * cap, connections closed for abuse) must not let one client fill the operator's disk: the
 * first line of a kind from a source is written at once, the rest within the interval are
 * counted, and one line with the count follows when the interval ends. The audit log keeps
 * its own lines; this is for the operator log only.
 */
export class SampledLog {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #maxKeys: number;
  /** key -> lines held back since the last one written, and what to say about them. */
  readonly #held = new Map<
    string,
    { count: number; level: LogLevel; message: string; fields: LogFields }
  >();
  /** A summary is due at the end of the current interval. */
  #flushDue = false;

  constructor(logger: Logger, options: { intervalMs?: number; maxKeys?: number } = {}) {
    this.#logger = logger;
    this.#intervalMs = options.intervalMs ?? 10_000;
    this.#maxKeys = options.maxKeys ?? 1000;
  }

  /**
   * Write `message` unless a line with the same `kind` from `source` was written within the
   * interval; then count it for the summary.
   */
  write(
    level: LogLevel,
    kind: string,
    source: string | undefined,
    message: string,
    fields: LogFields = {},
  ): void {
    // Past maxKeys sources (a flood from many addresses) they share one key: still bounded.
    let key = `${kind}\u0000${source ?? ''}`;
    if (!this.#held.has(key) && this.#held.size >= this.#maxKeys) key = `${kind}\u0000*`;
    const held = this.#held.get(key);
    if (held) {
      held.count++;
      return;
    }
    this.#held.set(key, { count: 0, level, message, fields });
    this.#logger[level](message, fields);
    if (!this.#flushDue) {
      this.#flushDue = true;
      setTimeout(() => this.#flush(), this.#intervalMs).unref();
    }
  }

  #flush(): void {
    this.#flushDue = false;
    const entries = [...this.#held.values()];
    this.#held.clear();
    for (const e of entries)
      if (e.count > 0)
        this.#logger[e.level](
          `${e.message} (${e.count} more like it in the last ${Math.round(this.#intervalMs / 1000)} s)`,
          e.fields,
        );
  }
}
