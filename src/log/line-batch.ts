/**
 * Log lines on their way to stderr, a few at a time. An end logs one line per stream, and at
 * a thousand new streams a second one write(2) per line was a system call and a wake-up of
 * whoever reads the pipe (a terminal, journald, the bench) per stream: measured in
 * docs/benchmark.md, 2-8% of the setup rate on two cores. Lines are gathered for at most
 * `delayMs` and written together, in order; a warning or an error goes out at once with
 * everything before it, and whatever is pending is written before the process exits.
 */
export class LineBatch {
  readonly #out: (text: string) => void;
  readonly #delayMs: number;
  readonly #maxChars: number;
  #pending: string[] = [];
  #chars = 0;
  #timer: NodeJS.Timeout | undefined;

  /**
   * `out` takes one or more whole lines, each ending in a newline. `delayMs`: how long a line
   * may wait for others; `maxChars`: pending text (newlines counted) written at once past it.
   */
  constructor(out: (text: string) => void, options: { delayMs: number; maxChars: number }) {
    this.#out = out;
    this.#delayMs = options.delayMs;
    this.#maxChars = options.maxChars;
  }

  /** A line (without its newline) to go out within `delayMs`. */
  add(line: string): void {
    this.#pending.push(line);
    this.#chars += line.length + 1;
    if (this.#chars >= this.#maxChars) return this.flush();
    // Unref'd: a pending line never keeps a process alive (its 'exit' writes it).
    this.#timer ??= setTimeout(LineBatch.#due, this.#delayMs, this).unref();
  }

  /** A line to go out now, after every line before it. */
  addNow(line: string): void {
    this.#pending.push(line);
    this.flush();
  }

  /** Write everything pending, now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const text = this.#pending.join('\n') + '\n';
    this.#pending = [];
    this.#chars = 0;
    this.#out(text);
  }

  /** Lines waiting to be written (for tests). */
  get pendingLines(): number {
    return this.#pending.length;
  }

  static #due(batch: LineBatch): void {
    batch.#timer = undefined;
    batch.flush();
  }
}

let stderrBatch: LineBatch | undefined;

/**
 * The process's one batch of lines for stderr, made on first use. It writes what is pending
 * when the process exits (process.stderr writes synchronously to files, pipes and terminals
 * on Linux, so the lines are out before it ends) and before an uncaught exception's report,
 * so that the lines leading up to it come first. Anything else the process writes to stderr
 * goes after a `flush()` (the CLI's own messages: cli-runner.ts), so lines stay in order.
 */
export function stderrLines(): LineBatch {
  if (stderrBatch) return stderrBatch;
  const batch = new LineBatch((text) => process.stderr.write(text), {
    delayMs: 20,
    maxChars: 16 * 1024,
  });
  process.on('exit', () => batch.flush());
  process.on('uncaughtExceptionMonitor', () => batch.flush());
  stderrBatch = batch;
  return batch;
}
