import type { Command } from 'commander';
import { Duplex } from 'node:stream';
import { formatHostPort } from '../auth/connection-string.js';
import { DstreamError } from '../errors.js';
import { withSpinner } from '../log/spinner.js';
import type { BridgeResult } from '../stream/bridge.js';
import { deviceIdProblem } from '../protocol/identifiers.js';
import { streamRequest } from '../service/stream-client.js';
import { initiateWith } from '../stream/carrier.js';
import { StreamEnds } from '../stream/stream-ends.js';
import { serviceCarrier } from '../service/service-carrier.js';
import {
  commandLogger,
  streamNameFrom,
  serviceAccess,
  withCredentialOptions,
  type CredentialFlags,
  warnIfPlainText,
  type CommandContext,
  type LogFlags,
  withResumeOptions,
  resumeFrom,
  transportFrom,
  withTransportOption,
} from './common.js';
import { closeCodes } from '../protocol/constants.js';

interface ConnectFlags extends LogFlags, CredentialFlags {
  readonly remotePort?: string;
  readonly stream?: string;
  readonly resume?: boolean;
  readonly resumeWindow?: string;
  readonly replayMemory?: string;
  readonly transport?: string;
}

/**
 * `dstream connect <device>`: one stream on stdin/stdout, for `ssh -o ProxyCommand`.
 * stdout carries stream bytes only; every message goes to stderr. Exit 0 when the stream
 * ended normally, 1 when it could not be opened or was cut.
 */
export async function runConnect(
  device: string,
  flags: ConnectFlags,
  ctx: CommandContext,
): Promise<void> {
  const { credential, target } = serviceAccess(flags, ctx);
  const idProblem = deviceIdProblem(device);
  if (idProblem) throw new DstreamError('ERR_USAGE', idProblem);
  const streamName = streamNameFrom(flags);
  const resume = resumeFrom(flags);
  const transport = transportFrom(flags);
  const logger = commandLogger(ctx, { ...flags, quiet: !flags.verbose });
  warnIfPlainText(credential.hub, logger);
  // SIGINT, SIGTERM and SIGHUP (ssh ends its ProxyCommand with SIGHUP) each end the stream at
  // once, deliberately: closed normally, so neither the hub nor the device holds it on.
  const stopped = new Promise<string>((resolve) => {
    void ctx.stopSignal.then(resolve);
    ctx.onHangup(() => resolve('SIGHUP'));
  });
  const carrier = serviceCarrier({ transport, credential, target, logger });
  // Stopped before the stream opened: the hub drops it at once.
  const leave = new AbortController();
  // ssh shows nothing until the stream is up; a spinner on the terminal says what is slow.
  const opening = withSpinner(
    `connecting to ${device} through ${formatHostPort(target.host, target.port)}`,
    ctx.stderrIsTty,
    () =>
      initiateWith(carrier, streamRequest(credential, target, { deviceId: device, streamName }), {
        resume: resume.resume,
        signal: leave.signal,
      }),
  );
  // The carrier keeps a connection open (the multiplexed carrier's): let go of it on every way
  // out, or the process would not exit.
  const first = await Promise.race([opening, stopped.then((signal) => ({ signal }))]).catch(
    (error: unknown) => {
      carrier.close();
      throw error;
    },
  );
  if ('signal' in first) {
    // The stream may still open (asked with the POST): the hub then drops its unpaired half
    // (pair timeout).
    leave.abort();
    opening
      .then(
        (ws) => ws.close(closeCodes.normal, 'stopped'),
        () => undefined,
      )
      .finally(() => carrier.close());
    throw new DstreamError(
      'ERR_INTERRUPTED',
      `stopped by ${first.signal} before the stream to '${device}' opened`,
    );
  }
  const ends = new StreamEnds({
    carrier,
    resume: resume.resume,
    resumeWindowMs: resume.resumeWindowMs,
  });
  const stdio = Duplex.from({ readable: ctx.stdio.input, writable: ctx.stdio.output });
  stdio.on('error', () => undefined);
  const result = await new Promise<BridgeResult>((resolve) => {
    const end = ends.carry(stdio, first, { logger, onEnd: resolve });
    void stopped.then((signal) => {
      logger.info('stopping the stream', { signal });
      end.stop();
    });
  });
  ends.close();
  // stdin may stay open (a terminal, or ssh's pipe) and Duplex.from does not let go of it:
  // stop reading it so the process can exit.
  stdio.destroy();
  ctx.stdio.input.destroy();
  if (result.end !== 'completed')
    throw new DstreamError(
      'ERR_STREAM_CUT',
      `the stream to '${device}' was cut (${result.end}, code ${result.closeCode})`,
      {
        hint: resume.resume
          ? undefined
          : 'The link to the hub or the device was lost. Without --no-resume (on the agent too), a stream survives a lost link or a hub restart.',
      },
    );
}

export function registerConnectCommand(program: Command, ctx: CommandContext): void {
  withCredentialOptions(
    withTransportOption(withResumeOptions(program.command('connect <device>'))),
    'service',
  )
    .description('one stream on stdin/stdout, for ssh -o ProxyCommand (messages go to stderr)')
    .option('--remote-port <port>', 'remote port on the device (the stream name; default 22)')
    .option('--stream <name>', "named stream instead of a port (the agent's --target NAME)")
    .option('-v, --verbose', 'log to stderr (otherwise only errors)')
    .addHelpText(
      'after',
      "\nExample:\n  ssh -o ProxyCommand='dstream connect %h' pi@pi-01\n\n~/.ssh/config:\n  Host pi-*\n    ProxyCommand dstream connect %h --remote-port %p",
    )
    .action((device: string, flags: ConnectFlags) => runConnect(device, flags, ctx));
}
