/** How long a task runs before its spinner shows: a quick one shows none (and loads no `ora`). */
const spinnerDelayMs = 150;

/**
 * Run `task` with a spinner on stderr when `enabled` (a TTY, not --quiet) and the task takes
 * longer than a moment; otherwise just run it. The spinner is cleared before anything else
 * prints, so stdout stays clean for scripts.
 */
export async function withSpinner<T>(
  text: string,
  enabled: boolean,
  task: () => Promise<T>,
): Promise<T> {
  // A terminal that reports no width (a pty nobody sized) makes ora clear lines without end.
  if (!enabled || !(process.stderr.columns > 0)) return task();
  let done = false;
  let stop = (): void => undefined;
  // `ora` is loaded only when a spinner shows: it (and what it imports) is a sixth of a
  // command's start-up, and `dstream connect` starts once per ssh run.
  const timer = setTimeout(() => {
    void import('ora').then(
      ({ default: ora }) => {
        if (done) return;
        const spinner = ora({ text, stream: process.stderr, discardStdin: false }).start();
        stop = () => spinner.stop();
      },
      () => undefined,
    );
  }, spinnerDelayMs);
  try {
    return await task();
  } finally {
    done = true;
    clearTimeout(timer);
    stop();
  }
}
