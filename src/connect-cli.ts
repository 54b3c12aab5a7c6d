import type { Command } from 'commander';
import { keepErrors, newProgram, runProgram } from './cli-runner.js';
import { registerConnectCommand } from './commands/connect.js';
import type { CommandContext } from './commands/common.js';

/**
 * `dstream connect` on its own: the same command as in the full CLI (src/cli.ts), in a program
 * that holds nothing else. ssh starts `connect` once per connection as its ProxyCommand, so
 * `npm run build` bundles this program into one file, dist/connect.mjs
 * (scripts/bundle-connect.mjs), and bin/dstream.js runs that for `dstream connect`: Node then
 * loads one file instead of about a hundred, and the command starts in about two thirds of the
 * time (docs/benchmark.md).
 */
export function buildConnectProgram(ctx: CommandContext): Command {
  // Only `dstream connect ...` comes here (bin/dstream.js), never the program's own help.
  const program = newProgram('dstream', 'dstream connect on its own');
  registerConnectCommand(program, ctx);
  return keepErrors(program);
}

/** Run `dstream connect`; returns the process exit code. */
export function main(argv: readonly string[]): Promise<number> {
  return runProgram(buildConnectProgram, argv);
}
