import type { Command } from 'commander';
import {
  formatFingerprint,
  formatServiceConnectionString,
  parseHostPort,
  type HubAddress,
} from '../auth/connection-string.js';
import { DstreamError, describeError } from '../errors.js';
import { openHubDataDir, type HubDataDir } from '../hub/data-dir.js';
import { derivePublicUrl, hostAndPort, parsePublicUrl } from '../hub/public-url.js';
import { startHub } from '../hub/server.js';
import { createAuditLog, noAuditLog, type AuditLog } from '../hub/audit-log.js';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import {
  commandLogger,
  defaultHubDataDir,
  parsePort,
  type CommandContext,
  type LogFlags,
  serveUntilStopped,
  withLogOptions,
  parseCount,
  parseSeconds,
  withHeartbeatOption,
} from './common.js';

interface HubFlags extends LogFlags {
  readonly listen: string;
  readonly dataDir?: string;
  readonly publicUrl?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly insecureNoTls?: boolean;
  readonly drainTimeout?: string;
  readonly heartbeatInterval?: string;
  readonly maxStreams?: string;
  readonly maxStreamsPerDevice?: string;
  readonly maxPendingPerDevice?: string;
  readonly maxTokenLifetime?: string;
  readonly authFailuresPerMinute?: string;
  readonly maxUnauthenticatedPerIp?: string;
  readonly maxFrameBytes?: string;
  readonly maxControlMessageBytes?: string;
  readonly headersTimeout?: string;
  readonly auditLog?: string;
  readonly metrics?: string;
}

/** Validated hub settings. */
export interface HubSettings {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly publicUrl: URL | undefined;
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  readonly insecureNoTls: boolean;
}

const publicUrlSetting = 'public_url';

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? '0.0.0.0';
  const port = m?.[2] !== undefined ? parsePort(m[2], '--listen', true) : NaN;
  const hp = m ? parseHostPort(`${host === '' ? '0.0.0.0' : host}:${port || 1}`) : undefined;
  if (!hp || Number.isNaN(port))
    throw new DstreamError('ERR_USAGE', `--listen ${text}: expected HOST:PORT, e.g. 0.0.0.0:8443`);
  return { host: hp.host, port };
}

function settingsFrom(flags: HubFlags, ctx: CommandContext): HubSettings {
  const { host, port } = parseListen(flags.listen);
  return {
    host,
    port,
    dataDir: flags.dataDir ?? defaultHubDataDir(ctx),
    publicUrl: flags.publicUrl === undefined ? undefined : parsePublicUrl(flags.publicUrl),
    tlsCertFile: flags.tlsCert,
    tlsKeyFile: flags.tlsKey,
    insecureNoTls: flags.insecureNoTls === true,
  };
}

async function openDataDir(s: HubSettings, logger: Logger): Promise<HubDataDir> {
  const names = ['localhost', '127.0.0.1', '::1'];
  if (s.publicUrl) names.push(hostAndPort(s.publicUrl).host);
  if (s.host !== '0.0.0.0' && s.host !== '::') names.push(s.host);
  const state = await openHubDataDir(
    {
      dataDir: s.dataDir,
      tlsCertFile: s.tlsCertFile,
      tlsKeyFile: s.tlsKeyFile,
      insecureNoTls: s.insecureNoTls,
      certificateNames: names,
    },
    logger,
  );
  // The public URL is kept in the data dir, so later runs (and `hub init`) hand out the same address.
  if (s.publicUrl) await state.registry.setSetting(publicUrlSetting, s.publicUrl.origin);
  return state;
}

function storedPublicUrl(state: HubDataDir): URL | undefined {
  const stored = state.registry.getSetting(publicUrlSetting);
  return stored === undefined ? undefined : new URL(stored);
}

function addressFor(publicUrl: URL, state: HubDataDir): HubAddress {
  const { host, port } = hostAndPort(publicUrl);
  return {
    host,
    port,
    tls: publicUrl.protocol === 'https:',
    fingerprint: state.tls?.selfSigned ? state.tls.fingerprint : undefined,
  };
}

/** `dstream hub init`: create (or reopen) the data dir and print the service connection string. */
export async function runHubInit(flags: HubFlags, ctx: CommandContext): Promise<void> {
  const logger = commandLogger(ctx, { ...flags, quiet: !flags.verbose });
  const s = settingsFrom(flags, ctx);
  const state = await openDataDir(s, logger);
  try {
    const publicUrl =
      s.publicUrl ?? storedPublicUrl(state) ?? derivePublicUrl(s.host, s.port, !s.insecureNoTls);
    const address = addressFor(publicUrl, state);
    ctx.stdout(
      formatServiceConnectionString(address, state.servicePolicy.name, state.servicePolicy.key) +
        '\n',
    );
  } finally {
    state.registry.close();
  }
}

/** `dstream hub`: initialise on first start, then serve until SIGINT/SIGTERM. */
export async function runHub(flags: HubFlags, ctx: CommandContext): Promise<void> {
  const logger = commandLogger(ctx, flags);
  const s = settingsFrom(flags, ctx);
  // Validate every option before touching the data dir.
  const drainTimeoutMs = parseSeconds(flags.drainTimeout ?? '30', '--drain-timeout', 0);
  const tuning = {
    heartbeatMs: parseSeconds(flags.heartbeatInterval ?? '20', '--heartbeat-interval'),
    limits: {
      ...(flags.maxStreams && { maxStreams: parseCount(flags.maxStreams, '--max-streams') }),
      ...(flags.maxStreamsPerDevice && {
        maxStreamsPerDevice: parseCount(flags.maxStreamsPerDevice, '--max-streams-per-device'),
      }),
      ...(flags.maxPendingPerDevice && {
        maxPendingPerDevice: parseCount(flags.maxPendingPerDevice, '--max-pending-per-device'),
      }),
    },
    guard: {
      ...(flags.maxTokenLifetime && {
        maxTokenLifetimeSeconds:
          parseSeconds(flags.maxTokenLifetime, '--max-token-lifetime', 60, 365 * 86400) / 1000,
      }),
      ...(flags.authFailuresPerMinute && {
        authFailuresPerMinute: parseCount(
          flags.authFailuresPerMinute,
          '--auth-failures-per-minute',
        ),
      }),
      ...(flags.maxUnauthenticatedPerIp && {
        unauthenticatedPerIp: parseCount(
          flags.maxUnauthenticatedPerIp,
          '--max-unauthenticated-per-ip',
        ),
      }),
    },
    ...(flags.maxFrameBytes && {
      maxFrameBytes: parseCount(flags.maxFrameBytes, '--max-frame-bytes'),
    }),
    ...(flags.maxControlMessageBytes && {
      maxControlMessageBytes: parseCount(
        flags.maxControlMessageBytes,
        '--max-control-message-bytes',
      ),
    }),
    ...(flags.headersTimeout && {
      headersTimeoutMs: parseSeconds(flags.headersTimeout, '--headers-timeout'),
    }),
  };
  const auditWhere = flags.auditLog ?? 'file';
  if (!['file', 'stderr', 'both', 'off'].includes(auditWhere))
    throw new DstreamError(
      'ERR_USAGE',
      `--audit-log ${auditWhere}: expected file, stderr, both or off`,
    );
  const metrics = flags.metrics ?? 'local';
  if (metrics !== 'local' && metrics !== 'open' && metrics !== 'off')
    throw new DstreamError('ERR_USAGE', `--metrics ${metrics}: expected local, open or off`);
  const state = await openDataDir(s, logger);
  let audit: AuditLog;
  try {
    audit =
      auditWhere === 'off'
        ? noAuditLog
        : createAuditLog({
            file: auditWhere === 'stderr' ? undefined : join(s.dataDir, 'audit.log'),
            echo: auditWhere === 'file' ? undefined : (line) => ctx.stderr(line + '\n'),
          });
  } catch (error) {
    state.registry.close();
    throw new DstreamError('ERR_DATA_DIR', `cannot open the audit log: ${describeError(error)}`, {
      cause: error,
    });
  }
  ctx.onHangup(() => audit.reopen());
  if (state.created) logger.info('initialised a new hub', { dataDir: s.dataDir });
  if (s.insecureNoTls)
    logger.warn(
      'TLS IS OFF (--insecure-no-tls): credentials and traffic travel in clear text. Only run this behind a TLS-terminating load balancer.',
    );
  const publicUrl = s.publicUrl ?? storedPublicUrl(state);
  let hub;
  try {
    hub = await startHub(
      {
        host: s.host,
        port: s.port,
        registry: state.registry,
        tls: state.tls,
        publicUrl,
        audit,
        metrics,
        ...tuning,
      },
      logger,
    );
  } catch (error) {
    state.registry.close();
    throw error;
  }
  const scheme = state.tls ? 'https' : 'http';
  const bound = `${scheme}://${s.host.includes(':') ? `[${s.host}]` : s.host}:${hub.port}`;
  logger.info(`hub listening on ${bound}`, {
    port: hub.port,
    publicUrl: hub.publicUrl.origin,
    dataDir: s.dataDir,
  });
  if (state.tls)
    logger.info(`TLS certificate SHA-256 fingerprint ${formatFingerprint(state.tls.fingerprint)}`);
  logger.info(`service connection string: run \`dstream hub init --data-dir ${s.dataDir}\``);
  await serveUntilStopped(ctx, logger, async () => {
    // Graceful: no new streams, devices told to go elsewhere, active streams may finish.
    // A second SIGINT/SIGTERM ends at once (src/cli.ts).
    await hub.drain(drainTimeoutMs);
    await audit.close();
    state.registry.close();
  });
}

function hubOptions(cmd: Command): Command {
  return cmd
    .option('--listen <host:port>', 'address and port to listen on', '0.0.0.0:8443')
    .option(
      '--data-dir <dir>',
      'registry, certificate and settings (default: the platform data dir)',
    )
    .option(
      '--public-url <url>',
      'address clients use to reach the hub, e.g. https://hub.example.com:8443',
    )
    .option(
      '--tls-cert <file>',
      'PEM certificate to serve (default: a self-signed one in the data dir)',
    )
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option(
      '--insecure-no-tls',
      'serve plain HTTP/WebSocket (only behind a TLS-terminating load balancer)',
    );
}

export function registerHubCommand(program: Command, ctx: CommandContext): void {
  const hub = withHeartbeatOption(withLogOptions(hubOptions(program.command('hub'))))
    .option('--drain-timeout <seconds>', 'on SIGTERM, how long active streams may finish', '30')
    .option('--max-streams <n>', 'streams open on the hub at once (default 8000)')
    .option('--max-streams-per-device <n>', 'streams open to one device at once (default 1000)')
    .option(
      '--max-pending-per-device <n>',
      'stream requests waiting for one device to answer (default 64)',
    )
    .option('--max-token-lifetime <seconds>', 'refuse tokens valid for longer (default 86400)')
    .option('--auth-failures-per-minute <n>', 'per address, then 429 (default 30)')
    .option('--max-unauthenticated-per-ip <n>', 'connections not yet authenticated (default 256)')
    .option('--max-frame-bytes <n>', 'largest stream frame accepted (default 4194304)')
    .option('--max-control-message-bytes <n>', 'largest control message (default 16384)')
    .option(
      '--audit-log <where>',
      'one JSON line per stream attempt: file (data dir), stderr, both, off',
      'file',
    )
    .option('--headers-timeout <seconds>', 'time a client has to send request headers (default 15)')
    .option(
      '--metrics <who>',
      'who may GET /metrics (Prometheus): local (loopback clients), open, off',
      'local',
    )
    .description('run the hub: device registry, stream orchestration and the streaming endpoint')
    .addHelpText(
      'after',
      '\nExample:\n  dstream hub --listen 0.0.0.0:8443 --data-dir /var/lib/dstream',
    )
    .action((flags: HubFlags) => runHub(flags, ctx));
  hubOptions(hub.command('init'))
    .description('create the hub data dir and print the service connection string on stdout')
    .option('-v, --verbose', 'log what is created')
    .addHelpText(
      'after',
      '\nExample:\n  export DSTREAM_SERVICE_CONNECTION_STRING="$(dstream hub init)"',
    )
    .action((flags: HubFlags) => runHubInit(flags, ctx));
}
