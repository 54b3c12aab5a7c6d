import type { Command } from 'commander';
import { DstreamError } from '../errors.js';
import { deviceIdProblem, streamNameProblem } from '../protocol/identifiers.js';
import { startProxy } from '../proxy/proxy.js';
import { hubTarget } from '../service/credentials.js';
import {
  commandLogger,
  parsePort,
  readCa,
  serviceCredential,
  type CommandContext,
  type LogFlags,
  warnIfPlainText,
  serveUntilStopped,
  withLogOptions,
  parseSeconds,
  withHeartbeatOption,
} from './common.js';

interface ProxyFlags extends LogFlags {
  readonly connectionString?: string;
  readonly device: string;
  readonly localPort: string;
  readonly remotePort?: string;
  readonly stream?: string;
  readonly bind: string;
  readonly ca?: string;
  readonly heartbeatInterval: string;
}

/** `dstream proxy`: listen locally; each connection becomes a stream to the device. */
export async function runProxy(flags: ProxyFlags, ctx: CommandContext): Promise<void> {
  const credential = serviceCredential(flags.connectionString, ctx);
  const idProblem = deviceIdProblem(flags.device);
  if (idProblem) throw new DstreamError('ERR_USAGE', `--device: ${idProblem}`);
  if (flags.remotePort !== undefined && flags.stream !== undefined)
    throw new DstreamError('ERR_USAGE', '--remote-port and --stream are alternatives; give one');
  const streamName = flags.stream ?? String(parsePort(flags.remotePort ?? '22', '--remote-port'));
  const nameProblem = streamNameProblem(streamName);
  if (nameProblem) throw new DstreamError('ERR_USAGE', `--stream: ${nameProblem}`);
  const port = parsePort(flags.localPort, '--local-port', true);
  const logger = commandLogger(ctx, flags);
  warnIfPlainText(credential.hub, logger);
  const proxy = await startProxy(
    {
      credential,
      target: hubTarget(credential, readCa(flags.ca)),
      deviceId: flags.device,
      streamName,
      bindHost: flags.bind,
      heartbeatMs: parseSeconds(flags.heartbeatInterval, '--heartbeat-interval'),
      port,
    },
    logger,
  );
  logger.info(`proxy listening on ${flags.bind}:${proxy.port}`, {
    port: proxy.port,
    device: flags.device,
    stream: streamName,
  });
  await serveUntilStopped(ctx, logger, () => proxy.close());
}

export function registerProxyCommand(program: Command, ctx: CommandContext): void {
  withHeartbeatOption(withLogOptions(program.command('proxy')))
    .description(
      'run on your machine: every local TCP connection gets its own stream to the device',
    )
    .requiredOption('--device <id>', 'device to reach')
    .requiredOption('--local-port <port>', 'local port to listen on (0 picks one)')
    .option('--remote-port <port>', 'remote port on the device (the stream name; default 22)')
    .option('--stream <name>', "named stream instead of a port (the agent's --target NAME)")
    .option('--bind <address>', 'local address to listen on', '127.0.0.1')
    .option(
      '--connection-string <cs>',
      'service connection string (default: $DSTREAM_SERVICE_CONNECTION_STRING)',
    )
    .option('--ca <file>', 'PEM CA certificate to verify the hub with')
    .addHelpText(
      'after',
      '\nExample:\n  dstream proxy --device pi-01 --local-port 2222 --remote-port 22\n  ssh -p 2222 pi@localhost',
    )
    .action((flags: ProxyFlags) => runProxy(flags, ctx));
}
