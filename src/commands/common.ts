import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  parseConnectionString,
  type HubAddress,
  type DeviceConnectionString,
  type ServiceConnectionString,
} from '../auth/connection-string.js';
import { DstreamError, describeError } from '../errors.js';
import { createLogger, type Logger, type LogLevel } from '../log/logger.js';
import { streamNameProblem } from '../protocol/identifiers.js';
import {
  defaultProfileName,
  profileNameProblem,
  profilesFile,
  ProfileStore,
  type Profile,
} from '../config/profile-store.js';
import type { HubTarget } from '../net/hub-client.js';
import { hubTarget } from '../service/credentials.js';
import type { Transport } from '../service/service-carrier.js';

/** What every command receives from the CLI edge, instead of reading process globals. */
export interface CommandContext {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: (text: string) => void;
  /** Raw lines to stderr (audit echo); messages go through the logger instead. */
  readonly stderr: (text: string) => void;
  /** The process's stdin/stdout as byte streams (dstream connect). */
  readonly stdio: { readonly input: NodeJS.ReadableStream & Readable; readonly output: Writable };
  /** Register a handler for SIGHUP (reopen log files). */
  readonly onHangup: (handler: () => void) => void;
  readonly stderrIsTty: boolean;
  readonly platform: NodeJS.Platform;
  /** Resolves when the user asks the process to stop (SIGINT/SIGTERM). */
  readonly stopSignal: Promise<string>;
}

export interface LogFlags {
  readonly verbose?: boolean;
  readonly quiet?: boolean;
  readonly json?: boolean;
}

export const deviceEnvVar = 'DSTREAM_DEVICE_CONNECTION_STRING';
export const serviceEnvVar = 'DSTREAM_SERVICE_CONNECTION_STRING';
export const profileEnvVar = 'DSTREAM_PROFILE';

/** A logger for a command: text (coloured on a TTY unless NO_COLOR) or JSON lines, on stderr. */
export function commandLogger(ctx: CommandContext, flags: LogFlags): Logger {
  const level: LogLevel = flags.verbose ? 'debug' : flags.quiet ? 'warn' : 'info';
  const color = ctx.stderrIsTty && ctx.env.NO_COLOR === undefined;
  return createLogger({ level, format: flags.json ? 'json' : 'text', color });
}

/** The flags every command that talks to a hub takes (see withCredentialOptions). */
export interface CredentialFlags {
  readonly connectionString?: string;
  readonly profile?: string;
  readonly ca?: string;
}

/** Where saved profiles live: $XDG_CONFIG_HOME/dstream (or the platform's equivalent). */
export function profilesDir(ctx: CommandContext): string {
  const home = ctx.env.HOME ?? homedir();
  if (ctx.platform === 'win32')
    return join(ctx.env.APPDATA ?? join(home, 'AppData', 'Roaming'), 'dstream');
  if (ctx.platform === 'darwin') return join(home, 'Library', 'Preferences', 'dstream');
  return join(ctx.env.XDG_CONFIG_HOME || join(home, '.config'), 'dstream');
}

/** The profile store; created on first use. */
export function openProfiles(ctx: CommandContext): ProfileStore {
  return new ProfileStore(profilesDir(ctx));
}

/** The profile store if one was ever saved (reading must not create files). */
export function existingProfiles(ctx: CommandContext): ProfileStore | undefined {
  const dir = profilesDir(ctx);
  return existsSync(join(dir, profilesFile)) ? new ProfileStore(dir) : undefined;
}

/** A saved profile, or a clear error naming the ones there are. */
function loadProfile(ctx: CommandContext, name: string, via: string): Profile {
  const problem = profileNameProblem(name);
  if (problem) throw new DstreamError('ERR_USAGE', `${via}: ${problem}`);
  const profile = existingProfiles(ctx)?.get(name);
  if (!profile)
    throw new DstreamError('ERR_PROFILE_NOT_FOUND', `no saved profile '${name}' (${via})`, {
      hint: 'List them with `dstream profiles`; save one with `dstream login <connection-string>`.',
    });
  return profile;
}

interface Resolved {
  readonly raw: string;
  readonly caFile: string | undefined;
  /** Where it came from, for error messages. */
  readonly source: string;
}

/**
 * The connection string and CA file to use, by precedence: --connection-string, --profile,
 * the kind's environment variable, $DSTREAM_PROFILE, then the saved 'default' profile.
 * Flags beat the environment, and the environment beats what was saved (docs/cli.md).
 */
function resolveRaw(
  flags: CredentialFlags,
  ctx: CommandContext,
  envVar: string,
  kind: string,
): Resolved {
  const fromProfile = (name: string, p: Profile): Resolved => ({
    raw: p.connectionString,
    caFile: flags.ca ?? p.ca,
    source: `profile '${name}'`,
  });
  if (flags.connectionString !== undefined && flags.profile !== undefined)
    throw new DstreamError(
      'ERR_USAGE',
      '--connection-string and --profile are alternatives; give one',
    );
  if (flags.profile !== undefined)
    return fromProfile(flags.profile, loadProfile(ctx, flags.profile, '--profile'));
  const raw = flags.connectionString ?? ctx.env[envVar];
  if (raw !== undefined && raw.trim() !== '')
    return {
      raw,
      caFile: flags.ca,
      source: flags.connectionString !== undefined ? '--connection-string' : `$${envVar}`,
    };
  if (flags.connectionString !== undefined)
    throw new DstreamError('ERR_CONNECTION_STRING_MISSING', '--connection-string is empty');
  const named = ctx.env[profileEnvVar];
  if (named !== undefined && named !== '')
    return fromProfile(named, loadProfile(ctx, named, `$${profileEnvVar}`));
  const saved = existingProfiles(ctx)?.get(defaultProfileName);
  if (saved) return fromProfile(defaultProfileName, saved);
  throw new DstreamError('ERR_CONNECTION_STRING_MISSING', `no ${kind} connection string`, {
    hint: `Pass --connection-string, set ${envVar}, or save one with \`dstream login\`.`,
  });
}

/** The device credential (see resolveRaw for where it comes from) and the CA to trust. */
export function deviceAccess(
  flags: CredentialFlags,
  ctx: CommandContext,
): { readonly credential: DeviceConnectionString; readonly ca: string | undefined } {
  const { raw, caFile, source } = resolveRaw(flags, ctx, deviceEnvVar, 'device');
  const cs = parseConnectionString(raw);
  if (cs.kind !== 'device')
    throw new DstreamError(
      'ERR_CONNECTION_STRING_INVALID',
      `${source} holds a service connection string; the agent needs a device one`,
      {
        hint: 'Create one with `dstream device add <id>`.',
      },
    );
  return { credential: cs, ca: readCa(caFile) };
}

/** The service credential (see resolveRaw for where it comes from) and how to reach its hub. */
export function serviceAccess(
  flags: CredentialFlags,
  ctx: CommandContext,
): {
  readonly credential: ServiceConnectionString;
  readonly target: HubTarget;
  /** The --ca file (or the profile's), if any. */
  readonly caFile: string | undefined;
} {
  const { raw, caFile, source } = resolveRaw(flags, ctx, serviceEnvVar, 'service');
  const cs = parseConnectionString(raw);
  if (cs.kind !== 'service')
    throw new DstreamError(
      'ERR_CONNECTION_STRING_INVALID',
      `${source} holds a device connection string; this command needs a service one`,
      {
        hint: 'Print the service connection string with `dstream hub init` on the hub.',
      },
    );
  return { credential: cs, target: hubTarget(cs, readCa(caFile)), caFile };
}

/** --connection-string, --profile and --ca, worded for a device or a service credential. */
export function withCredentialOptions(cmd: Command, kind: 'device' | 'service'): Command {
  const envVar = kind === 'device' ? deviceEnvVar : serviceEnvVar;
  return cmd
    .option('--connection-string <cs>', `${kind} connection string (default: $${envVar})`)
    .option(
      '--profile <name>',
      `saved profile to use (default: $${profileEnvVar}, else 'default'; see dstream login)`,
    )
    .option('--ca <file>', 'PEM CA certificate to verify the hub with');
}

/** Read a --ca PEM file. */
export function readCa(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new DstreamError('ERR_USAGE', `cannot read --ca ${file}: ${describeError(error)}`);
  }
}

/** Parse a TCP port option; `allowZero` for "pick a free port". */
export function parsePort(text: string, flag: string, allowZero = false): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= (allowZero ? 0 : 1) && n <= 65535))
    throw new DstreamError(
      'ERR_USAGE',
      `${flag} ${text}: not a port number (${allowZero ? 0 : 1}-65535)`,
    );
  return n;
}

/** The platform's per-user data directory for the hub. */
export function defaultHubDataDir(ctx: CommandContext): string {
  const home = ctx.env.HOME ?? homedir();
  if (ctx.platform === 'win32')
    return join(ctx.env.LOCALAPPDATA ?? join(home, 'AppData', 'Local'), 'dstream', 'hub');
  if (ctx.platform === 'darwin')
    return join(home, 'Library', 'Application Support', 'dstream', 'hub');
  return join(ctx.env.XDG_DATA_HOME || join(home, '.local', 'share'), 'dstream', 'hub');
}

/** The logging flags every long-running command takes. */
export function withLogOptions(cmd: Command): Command {
  return cmd
    .option('-v, --verbose', 'log debug detail')
    .option('-q, --quiet', 'log warnings and errors only')
    .option('--json', 'log JSON lines');
}

/** Say loudly when a connection string points at a hub without TLS. */
export function warnIfPlainText(hub: HubAddress, logger: Logger): void {
  if (!hub.tls)
    logger.warn(
      'TLS IS OFF for this hub (UseTls=false): credentials and traffic travel in clear text.',
    );
}

/** Wait for SIGINT/SIGTERM, then run `close` and log the shutdown. */
export async function serveUntilStopped(
  ctx: CommandContext,
  logger: Logger,
  close: () => Promise<void>,
): Promise<void> {
  const signal = await ctx.stopSignal;
  logger.info('shutting down', { signal });
  await close();
}

/** Parse a duration in seconds (decimals allowed) into milliseconds. */
export function parseSeconds(text: string, flag: string, min = 0.1, max = 86_400): number {
  const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max))
    throw new DstreamError('ERR_USAGE', `${flag} ${text}: expected seconds from ${min} to ${max}`);
  return Math.round(n * 1000);
}

/** Parse a whole number option at least 1. */
export function parseCount(text: string, flag: string): number {
  const n = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1))
    throw new DstreamError('ERR_USAGE', `${flag} ${text}: expected a whole number from 1`);
  return n;
}

/** The --heartbeat-interval option (seconds). */
export function withHeartbeatOption(cmd: Command): Command {
  return cmd.option(
    '--heartbeat-interval <seconds>',
    'ping interval; two missed pings drop a connection',
    '20',
  );
}

/** --no-resume and --resume-window: streams that survive a lost hub link (src/stream/). */
export function withResumeOptions(cmd: Command): Command {
  return cmd
    .option(
      '--no-resume',
      'plain streams: a lost hub link or a hub restart ends them (resumable streams are the default when both ends offer them)',
    )
    .option('--resume', 'resumable streams (the default; kept for older command lines)')
    .option(
      '--resume-window <seconds>',
      'how long a stream whose hub link was lost may take to resume before it is reset',
      '120',
    )
    .option(
      '--replay-memory <MiB>',
      'most memory all resumable streams together keep for replay; past it they read more slowly',
      '128',
    );
}

/** --transport: how streams reach the hub (src/stream/mux-carrier.ts, websocket-carrier.ts). */
export function withTransportOption(cmd: Command): Command {
  return cmd.option(
    '--transport <ws|mux>',
    'mux: every stream a substream of one kept connection to the hub; ws: a TLS WebSocket per stream (as Azure)',
    'mux',
  );
}

/** The --transport value, checked. */
export function transportFrom(flags: { readonly transport?: string }): Transport {
  const transport = flags.transport ?? 'mux';
  if (transport !== 'ws' && transport !== 'mux')
    throw new DstreamError('ERR_USAGE', `--transport ${transport}: expected ws or mux`, {
      hint: 'mux (the default) carries every stream over one connection; ws opens one per stream.',
    });
  return transport;
}

/** The resume settings from those options: on unless --no-resume. */
export function resumeFrom(flags: {
  readonly resume?: boolean;
  readonly resumeWindow?: string;
  readonly replayMemory?: string;
}): {
  readonly resume: boolean;
  readonly resumeWindowMs: number;
  readonly replayBudgetBytes: number;
} {
  return {
    resume: flags.resume !== false,
    resumeWindowMs: parseSeconds(flags.resumeWindow ?? '120', '--resume-window'),
    replayBudgetBytes: parseCount(flags.replayMemory ?? '128', '--replay-memory') * 1024 * 1024,
  };
}

/** The start-up line's words for the resume settings. */
export function describeResume(settings: {
  readonly resume: boolean;
  readonly resumeWindowMs: number;
}): string {
  return settings.resume
    ? `resumable streams on (window ${Math.round(settings.resumeWindowMs / 1000)} s)`
    : 'resumable streams off (--no-resume)';
}

/** The stream name from --remote-port (default 22) or --stream, which exclude each other. */
export function streamNameFrom(flags: {
  readonly remotePort?: string;
  readonly stream?: string;
}): string {
  if (flags.remotePort !== undefined && flags.stream !== undefined)
    throw new DstreamError('ERR_USAGE', '--remote-port and --stream are alternatives; give one');
  const name = flags.stream ?? String(parsePort(flags.remotePort ?? '22', '--remote-port'));
  const problem = streamNameProblem(name);
  if (problem) throw new DstreamError('ERR_USAGE', `--stream: ${problem}`);
  return name;
}
