import type { Command } from 'commander';
import { startAgent } from '../agent/agent.js';
import { buildAllowList } from '../agent/allow-list.js';
import { formatHostPort } from '../auth/connection-string.js';
import {
  commandLogger,
  deviceAccess,
  withCredentialOptions,
  type CredentialFlags,
  type CommandContext,
  type LogFlags,
  warnIfPlainText,
  serveUntilStopped,
  withLogOptions,
  parseSeconds,
  withHeartbeatOption,
  withResumeOptions,
  resumeFrom,
  describeResume,
  transportFrom,
  withTransportOption,
} from './common.js';

interface AgentFlags extends LogFlags, CredentialFlags {
  readonly port: string[];
  readonly target: string[];
  readonly heartbeatInterval: string;
  readonly resume?: boolean;
  readonly resumeWindow?: string;
  readonly replayMemory?: string;
  readonly transport?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** `dstream agent`: run on the device, serve stream requests from the allow-list. */
export async function runAgent(flags: AgentFlags, ctx: CommandContext): Promise<void> {
  const { credential, ca } = deviceAccess(flags, ctx);
  const allow = buildAllowList(flags.port, flags.target);
  const logger = commandLogger(ctx, flags);
  warnIfPlainText(credential.hub, logger);
  const allowed = [...allow]
    .map(([name, t]) => `${name}->${formatHostPort(t.host, t.port)}`)
    .join(', ');
  const resume = resumeFrom(flags);
  const transport = transportFrom(flags);
  logger.info('agent starting', {
    device: credential.deviceId,
    allow: allowed,
    streams: describeResume(resume),
  });
  const agent = startAgent(
    {
      credential,
      allow,
      ca,
      heartbeatMs: parseSeconds(flags.heartbeatInterval, '--heartbeat-interval'),
      transport,
      ...resume,
    },
    logger,
  );
  await serveUntilStopped(ctx, logger, () => agent.close());
}

export function registerAgentCommand(program: Command, ctx: CommandContext): void {
  withCredentialOptions(
    withTransportOption(
      withResumeOptions(withHeartbeatOption(withLogOptions(program.command('agent')))),
    ),
    'device',
  )
    .description(
      'run on the device: keep a connection to the hub and pipe allowed streams to local ports',
    )
    .option('--port <port>', 'allow streams named PORT to 127.0.0.1:PORT (repeatable)', collect, [])
    .option(
      '--target <name=host:port>',
      'allow a named stream to a local target (repeatable)',
      collect,
      [],
    )
    .addHelpText(
      'after',
      '\nExample:\n  dstream agent --connection-string "$(cat pi-01.connection-string)" --port 22',
    )
    .action((flags: AgentFlags) => runAgent(flags, ctx));
}
