import { Chalk } from 'chalk';
import { Command, CommanderError, type Option } from 'commander';
import type { CommandContext } from './commands/common.js';
import { exitCodeFor, isDstreamError } from './errors.js';
import { keepHeapFloor } from './runtime/heap-floor.js';
import { stderrLines } from './log/line-batch.js';

/** dstream's version, shown by --version and GET /hub. */
export const version = '0.1.0';

/** The CLI's own stderr output, after the log lines written before it (log/line-batch.ts). */
function writeStderr(text: string): boolean {
  stderrLines().flush();
  return process.stderr.write(text);
}

function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    const onSignal = (signal: string): void => {
      resolve(signal);
      // A second signal while shutting down ends at once.
      process.once(signal as NodeJS.Signals, () => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

/**
 * One way of showing defaults in --help, `(default: 20)`, as the descriptions that state their
 * own default say it: never with quotes (commander's `(default: "20")`), and nothing for an
 * empty list or a negated flag.
 */
function describeOption(option: Option): string {
  const value: unknown = option.defaultValue;
  const shown =
    option.defaultValueDescription ??
    (value === undefined || option.negate || (Array.isArray(value) && value.length === 0)
      ? undefined
      : Array.isArray(value)
        ? value.join(', ')
        : typeof value === 'string' || typeof value === 'number'
          ? String(value)
          : JSON.stringify(value));
  return shown === undefined ? option.description : `${option.description} (default: ${shown})`;
}

/** A program with dstream's help, output and error conventions, before its commands. */
export function newProgram(name: string, description: string): Command {
  return new Command(name)
    .version(version)
    .description(description)
    .enablePositionalOptions()
    .configureHelp({ optionDescription: describeOption })
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: writeStderr,
    });
}

/** Errors reach `runProgram` instead of exiting the process (commander's default). */
export function keepErrors(program: Command): Command {
  program.exitOverride();
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

/**
 * Run a program built by `build` on `argv`; returns the process exit code. The only place
 * errors become output (both the full CLI and the agent bundle run through it).
 */
export async function runProgram(
  build: (ctx: CommandContext) => Command,
  argv: readonly string[],
): Promise<number> {
  // A reader that stops early (`dstream --help | head`) is not an error: end quietly, as
  // Unix tools do, instead of dying on an unhandled EPIPE with a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
  });
  // Every byte a stream moves is a Buffer: without a floor under V8's old generation, a bulk
  // transfer makes a full collection every few hundred milliseconds in each process.
  keepHeapFloor();
  const color = process.stderr.isTTY && process.env.NO_COLOR === undefined;
  const paint = new Chalk({ level: color ? 1 : 0 });
  const ctx: CommandContext = {
    env: process.env,
    stdout: (text) => process.stdout.write(text),
    stderr: writeStderr,
    onHangup: (handler) => process.on('SIGHUP', handler),
    stdio: { input: process.stdin, output: process.stdout },
    stderrIsTty: process.stderr.isTTY,
    platform: process.platform,
    stopSignal: stopSignal(),
  };
  try {
    await build(ctx).parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (or help/version, which exit 0).
      return error.exitCode === 0 ? 0 : 2;
    }
    if (isDstreamError(error)) {
      writeStderr(`${paint.red('error:')} ${error.message}\n`);
      if (error.hint) writeStderr(`${paint.dim('hint:')} ${error.hint}\n`);
      return exitCodeFor(error);
    }
    // Not a user mistake: a bug. Say so, with the stack, so it can be reported.
    writeStderr(
      `${paint.red('internal error:')} ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return 1;
  }
}
