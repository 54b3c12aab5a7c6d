import type { Command } from 'commander';
import { keepErrors, newProgram, runProgram } from './cli-runner.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerConnectCommand } from './commands/connect.js';
import type { CommandContext } from './commands/common.js';
import { registerDeviceCommands } from './commands/device.js';
import { registerHubCommand } from './commands/hub.js';
import { registerLoginCommands } from './commands/login.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerProxyCommand } from './commands/proxy.js';

/** Build the `dstream` program. */
export function buildProgram(ctx: CommandContext): Command {
  const program = newProgram(
    'dstream',
    'Reach SSH, RDP or any TCP service on a device behind NAT, by device ID, through a hub.',
  ).addHelpText(
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
  return keepErrors(program);
}

/** Run the CLI; returns the process exit code. */
export function main(argv: readonly string[]): Promise<number> {
  return runProgram(buildProgram, argv);
}
