import { Chalk } from 'chalk';
import { Command, CommanderError, type Option } from 'commander';
import { registerAgentCommand } from './commands/agent.js';
import { registerConnectCommand } from './commands/connect.js';
import type { CommandContext } from './commands/common.js';
import { registerDeviceCommands } from './commands/device.js';
import { registerHubCommand } from './commands/hub.js';
import { registerLoginCommands } from './commands/login.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerProxyCommand } from './commands/proxy.js';
import { exitCodeFor, isDstreamError } from './errors.js';

const version = '0.1.0';

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

/** Build the `dstream` program. */
export function buildProgram(ctx: CommandContext): Command {
  const program = new Command('dstream')
    .version(version)
    .description(
      'Reach SSH, RDP or any TCP service on a device behind NAT, by device ID, through a hub.',
    )
    .enablePositionalOptions()
    .configureHelp({ optionDescription: describeOption })
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
    })
    .addHelpText(
      'after',
      `
Quick start:
  dstream hub                                        # on the hub machine
  export DSTREAM_SERVICE_CONNECTION_STRING="$(dstream hub init)"
  dstream device add pi-01 > pi-01.cs                # device credential
  dstream agent --connection-string "$(cat pi-01.cs)" --port 22     # on the device
  dstream proxy --device pi-01 --local-port 2222 --remote-port 22   # on your laptop
  ssh -p 2222 pi@localhost`,
    );
  registerHubCommand(program, ctx);
  registerDeviceCommands(program, ctx);
  registerPolicyCommands(program, ctx);
  registerAgentCommand(program, ctx);
  registerProxyCommand(program, ctx);
  registerConnectCommand(program, ctx);
  registerLoginCommands(program, ctx);
  program.exitOverride();
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

/** Run the CLI; returns the process exit code. The only place errors become output. */
export async function main(argv: readonly string[]): Promise<number> {
  // A reader that stops early (`dstream --help | head`) is not an error: end quietly, as
  // Unix tools do, instead of dying on an unhandled EPIPE with a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
  });
  const color = process.stderr.isTTY && process.env.NO_COLOR === undefined;
  const paint = new Chalk({ level: color ? 1 : 0 });
  const ctx: CommandContext = {
    env: process.env,
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    onHangup: (handler) => process.on('SIGHUP', handler),
    stdio: { input: process.stdin, output: process.stdout },
    stderrIsTty: process.stderr.isTTY,
    platform: process.platform,
    stopSignal: stopSignal(),
  };
  try {
    await buildProgram(ctx).parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (or help/version, which exit 0).
      return error.exitCode === 0 ? 0 : 2;
    }
    if (isDstreamError(error)) {
      process.stderr.write(`${paint.red('error:')} ${error.message}\n`);
      if (error.hint) process.stderr.write(`${paint.dim('hint:')} ${error.hint}\n`);
      return exitCodeFor(error);
    }
    // Not a user mistake: a bug. Say so, with the stack, so it can be reported.
    process.stderr.write(
      `${paint.red('internal error:')} ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return 1;
  }
}
