import type { Command } from 'commander';
import { keepErrors, newProgram, runProgram } from './cli-runner.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerConnectCommand } from './commands/connect.js';
import type { CommandContext } from './commands/common.js';

/**
 * The device's program: `agent` (and `connect`, which needs nothing more), without the hub,
 * the registry or anything native. `npm run build` bundles it with its dependencies into one
 * file, dist/agent/dstream-agent.mjs, which the hub serves at /agent/dstream-agent.mjs.
 */
export function buildAgentProgram(ctx: CommandContext): Command {
  const program = newProgram(
    'dstream-agent',
    "dstream's device side in one file: run the agent on a device (and `connect`).",
  ).addHelpText(
    'after',
    `
Example:
  node dstream-agent.mjs agent --connection-string "$(cat pi-01.cs)" --port 22`,
  );
  registerAgentCommand(program, ctx);
  registerConnectCommand(program, ctx);
  return keepErrors(program);
}

/** Run the device's program; returns the process exit code. */
export function agentMain(argv: readonly string[]): Promise<number> {
  return runProgram(buildAgentProgram, argv);
}
