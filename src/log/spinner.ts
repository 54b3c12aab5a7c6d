import ora from 'ora';

/**
 * Run `task` with a spinner on stderr when `enabled` (a TTY, not --quiet); otherwise just run it.
 * The spinner is cleared before anything else prints, so stdout stays clean for scripts.
 */
export async function withSpinner<T>(
  text: string,
  enabled: boolean,
  task: () => Promise<T>,
): Promise<T> {
  // A terminal that reports no width (a pty nobody sized) makes ora clear lines without end.
  if (!enabled || !(process.stderr.columns > 0)) return task();
  const spinner = ora({ text, stream: process.stderr, discardStdin: false }).start();
  try {
    return await task();
  } finally {
    spinner.stop();
  }
}
