import type { Command } from 'commander';
import { formatHostPort, type ServiceConnectionString } from '../auth/connection-string.js';
import { DstreamError, describeError, isDstreamError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { withSpinner } from '../log/spinner.js';
import type { HubTarget } from '../net/hub-client.js';
import { checkHubHealth } from '../service/hub-api.js';
import { RegistryClient } from '../service/registry-client.js';
import { deviceIdProblem } from '../protocol/identifiers.js';
import { startProxy } from '../proxy/proxy.js';
import { serviceLink } from '../service/service-carrier.js';
import { startSocksProxy } from '../proxy/socks-server.js';
import { parseForward, type Forward } from '../proxy/forward-spec.js';
import {
  commandLogger,
  parsePort,
  serviceAccess,
  withCredentialOptions,
  type CredentialFlags,
  type CommandContext,
  type LogFlags,
  warnIfPlainText,
  serveUntilStopped,
  withLogOptions,
  parseSeconds,
  withHeartbeatOption,
  streamNameFrom,
  withResumeOptions,
  resumeFrom,
  transportFrom,
  withTransportOption,
  describeResume,
} from './common.js';

interface ProxyFlags extends LogFlags, CredentialFlags {
  readonly device?: string;
  readonly localPort?: string;
  readonly remotePort?: string;
  readonly stream?: string;
  readonly bind: string;
  readonly L: string[];
  readonly socks?: string;
  readonly heartbeatInterval: string;
  readonly resume?: boolean;
  readonly resumeWindow?: string;
  readonly replayMemory?: string;
  readonly transport?: string;
}

/** `--socks [BIND:]PORT`. */
function parseSocksListen(text: string, defaultBind: string): { bind: string; port: number } {
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(text);
  if (!m) throw new DstreamError('ERR_USAGE', `--socks ${text}: expected [BIND:]PORT, e.g. 1080`);
  return {
    bind: m[1]?.replace(/^\[|\]$/g, '') ?? defaultBind,
    port: parsePort(m[2] ?? '', '--socks', true),
  };
}

/** The forwards asked for: every -L, plus the --device/--local-port shorthand. */
function forwardsFrom(flags: ProxyFlags): Forward[] {
  const forwards = flags.L.map((spec) => parseForward(spec, flags.bind));
  if (flags.device !== undefined || flags.localPort !== undefined) {
    if (flags.device === undefined || flags.localPort === undefined)
      throw new DstreamError('ERR_USAGE', '--device and --local-port go together', {
        hint: 'Give both: `dstream proxy --device pi-01 --local-port 2222` (or -L 2222:pi-01:22).',
      });
    const idProblem = deviceIdProblem(flags.device);
    if (idProblem) throw new DstreamError('ERR_USAGE', `--device: ${idProblem}`);
    forwards.push({
      bind: flags.bind,
      port: parsePort(flags.localPort, '--local-port', true),
      deviceId: flags.device,
      streamName: streamNameFrom(flags),
    });
  }
  if (forwards.length === 0 && flags.socks === undefined)
    throw new DstreamError('ERR_USAGE', 'nothing to forward', {
      hint: 'Give --device ID --local-port PORT, one or more -L PORT:DEVICE:REMOTE, or --socks PORT.',
    });
  return forwards;
}

/**
 * Reach the hub once before listening, under a spinner on a TTY: a wrong address, pin or CA is
 * a configuration error and stops the proxy now, not at the first ssh. A hub that is merely
 * down is a warning: each connection tries again, as the hub may come up later.
 */
async function preflight(
  target: HubTarget,
  flags: ProxyFlags,
  ctx: CommandContext,
  logger: Logger,
): Promise<boolean> {
  const where = formatHostPort(target.host, target.port);
  try {
    await withSpinner(
      `connecting to the hub at ${where}`,
      ctx.stderrIsTty && !flags.quiet && !flags.json,
      () => checkHubHealth(target),
    );
    logger.debug('the hub answers', { hub: where });
    return true;
  } catch (error) {
    if (isDstreamError(error) && error.code === 'ERR_HUB_UNREACHABLE') {
      logger.warn('the hub is not reachable now; each connection will try again', {
        reason: error.message,
      });
      return false;
    }
    throw error;
  }
}

/**
 * A device that is not registered fails now, as a wrong pin does, not at the first ssh. A
 * policy without RegistryRead cannot ask: then the first connection says it.
 */
async function checkDevices(
  credential: ServiceConnectionString,
  target: HubTarget,
  deviceIds: readonly string[],
  logger: Logger,
): Promise<void> {
  const registry = new RegistryClient(credential, target);
  for (const deviceId of new Set(deviceIds)) {
    try {
      const device = await registry.show(deviceId);
      if (device.status === 'disabled')
        logger.warn(`device '${deviceId}' is disabled: streams to it fail until it is enabled`);
      else if (device.connectionState !== 'Connected')
        logger.info(`device '${deviceId}' is not connected now; streams wait for its agent`);
    } catch (error) {
      if (isDstreamError(error) && error.code === 'ERR_DEVICE_NOT_FOUND') throw error;
      logger.debug('cannot look the device up; not checked', {
        device: deviceId,
        reason: describeError(error),
      });
    }
  }
}

/** `dstream proxy`: listen locally; each connection becomes a stream to its device. */
export async function runProxy(flags: ProxyFlags, ctx: CommandContext): Promise<void> {
  const { credential, target } = serviceAccess(flags, ctx);
  const forwards = forwardsFrom(flags);
  const socks = flags.socks === undefined ? undefined : parseSocksListen(flags.socks, flags.bind);
  const heartbeatMs = parseSeconds(flags.heartbeatInterval, '--heartbeat-interval');
  const resume = resumeFrom(flags);
  const transport = transportFrom(flags);
  const logger = commandLogger(ctx, flags);
  warnIfPlainText(credential.hub, logger);
  if (await preflight(target, flags, ctx, logger))
    await checkDevices(
      credential,
      target,
      forwards.map((f) => f.deviceId),
      logger,
    );
  // One link for every listener: all forwards and the SOCKS server ride one carrier connection.
  const link = serviceLink({ transport, credential, target, heartbeatMs, logger });
  const proxies: { close(): Promise<void> }[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.all(proxies.map((p) => p.close()));
    // Last: the listeners' streams have queued their resets on it.
    link.close();
  };
  try {
    for (const f of forwards) {
      const proxy = await startProxy(
        {
          credential,
          target,
          deviceId: f.deviceId,
          streamName: f.streamName,
          bindHost: f.bind,
          port: f.port,
          heartbeatMs,
          link,
          ...resume,
        },
        logger,
      );
      proxies.push(proxy);
      logger.info(`proxy listening on ${f.bind}:${proxy.port}`, {
        port: proxy.port,
        device: f.deviceId,
        stream: f.streamName,
        streams: describeResume(resume),
      });
    }
    if (socks) {
      const server = await startSocksProxy(
        {
          credential,
          target,
          bindHost: socks.bind,
          port: socks.port,
          heartbeatMs,
          link,
          ...resume,
        },
        logger,
      );
      proxies.push(server);
      logger.info(`SOCKS5 proxy listening on ${socks.bind}:${server.port}`, {
        port: server.port,
        streams: describeResume(resume),
      });
    }
  } catch (error) {
    await closeAll();
    throw error;
  }
  await serveUntilStopped(ctx, logger, closeAll);
}

export function registerProxyCommand(program: Command, ctx: CommandContext): void {
  withCredentialOptions(
    withTransportOption(
      withResumeOptions(withHeartbeatOption(withLogOptions(program.command('proxy')))),
    ),
    'service',
  )
    .description(
      'run on your machine: every local TCP connection gets its own stream to the device',
    )
    .option(
      '-L <[bind:]port:device:remote>',
      'forward a local port to a device port or named stream (repeatable, OpenSSH syntax)',
      (value: string, previous: string[]) => [...previous, value],
      [],
    )
    .option('--socks <[bind:]port>', 'a SOCKS5 server: host = device ID, port = remote port')
    .option('--device <id>', 'device to reach (with --local-port: one forward)')
    .option('--local-port <port>', 'local port to listen on (0 picks one)')
    .option('--remote-port <port>', 'remote port on the device (the stream name; default 22)')
    .option('--stream <name>', "named stream instead of a port (the agent's --target NAME)")
    .option('--bind <address>', 'local address to listen on', '127.0.0.1')
    .addHelpText(
      'after',
      '\nExample:\n  dstream proxy --device pi-01 --local-port 2222 --remote-port 22\n  ssh -p 2222 pi@localhost',
    )
    .action((flags: ProxyFlags) => runProxy(flags, ctx));
}
