import type { Command } from 'commander';
import type { HubSettings } from './hub-settings.js';
import {
  formatFingerprint,
  formatServiceConnectionString,
  parseHostPort,
  type HubAddress,
} from '../auth/connection-string.js';
import { DstreamError, describeError } from '../errors.js';
import type { HubDataDir } from '../hub/store/data-dir.js';
import type { Registry } from '../hub/store/registry.js';
import type { ClusterNode } from '../hub/cluster/node.js';
import { parseStoreUrl } from '../hub/cluster/store-url.js';
import { derivePublicUrl, hostAndPort, parsePublicUrl } from '../hub/http/public-url.js';
import { parseTrustedSources } from '../hub/admission/proxy-protocol-front.js';
import { maxConnectionsFrom, openFileLimit } from './hub-fd-limit.js';
import {
  createAuditLog,
  noAuditLog,
  readAuditTail,
  type AuditLog,
} from '../hub/store/audit-log.js';
import { join, resolve } from 'node:path';
import {
  readServingRecord,
  servingContradiction,
  writeServingRecord,
} from './hub-serving-record.js';
import {
  contradiction,
  recordServing,
  servingRecord,
  servingRequest,
  servingTls,
  withRecord,
} from './hub-serving.js';
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
  readonly listen?: string;
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
  readonly rawEofLinger?: string;
  readonly maxControlMessageBytes?: string;
  readonly headersTimeout?: string;
  readonly keepAliveTimeout?: string;
  readonly maxConnections?: string;
  readonly proxyProtocolFrom?: string;
  readonly auditLog?: string;
  readonly metrics?: string;
  readonly redis?: string;
  readonly nodeUrl?: string;
  readonly mqttListen?: string;
  readonly resumeWindow?: string;
  /** false with --no-mqtt. */
  readonly mqtt?: boolean;
  readonly consoleListen?: string;
  /** false with --no-console. */
  readonly console?: boolean;
}

/** Validated hub settings. */

const publicUrlSetting = 'public_url';
const defaultListen = '0.0.0.0:8443';
/** The operator console's own listener, on loopback unless --console-listen says otherwise. */
const defaultConsoleListen = '127.0.0.1:8444';
/** IoT Hub's MQTT over TLS port, where Azure's device SDKs connect. */
const defaultMqttPort = 8883;

function parseListen(
  text: string,
  flag = '--listen',
  example = defaultListen,
): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? '0.0.0.0';
  const port = m?.[2] !== undefined ? parsePort(m[2], flag, true) : NaN;
  const hp = m ? parseHostPort(`${host === '' ? '0.0.0.0' : host}:${port || 1}`) : undefined;
  if (!hp || Number.isNaN(port))
    throw new DstreamError('ERR_USAGE', `${flag} ${text}: expected HOST:PORT, e.g. ${example}`);
  return { host: hp.host, port };
}

/**
 * MQTT over TLS listens on the --listen host (a hub bound to loopback opens nothing on other
 * interfaces), port 8883; only an explicit --mqtt-listen that cannot bind stops the hub.
 */
function mqttListenFrom(flags: HubFlags, listenHost: string): HubSettings['mqttListen'] {
  if (flags.mqtt === false) {
    if (flags.mqttListen !== undefined)
      throw new DstreamError('ERR_USAGE', '--mqtt-listen and --no-mqtt contradict each other');
    return undefined;
  }
  if (flags.mqttListen === undefined)
    return { host: listenHost, port: defaultMqttPort, optional: true };
  const example = `0.0.0.0:${defaultMqttPort}`;
  return { ...parseListen(flags.mqttListen, '--mqtt-listen', example), optional: false };
}

/** The console's listener: --console-listen, else loopback 8444 (skipped with a warning when taken). */
function consoleListenFrom(
  flags: HubFlags,
): { host: string; port: number; optional: boolean } | undefined {
  if (flags.console === false) {
    if (flags.consoleListen !== undefined)
      throw new DstreamError(
        'ERR_USAGE',
        '--console-listen and --no-console contradict each other',
      );
    return undefined;
  }
  if (flags.consoleListen === undefined)
    return { ...parseListen(defaultConsoleListen), optional: true };
  return {
    ...parseListen(flags.consoleListen, '--console-listen', defaultConsoleListen),
    optional: false,
  };
}

function settingsFrom(flags: HubFlags, ctx: CommandContext): HubSettings {
  const { host, port } = parseListen(flags.listen ?? defaultListen);
  // From the environment too, so that a password in the URL stays out of `ps` listings.
  const redis = flags.redis ?? nonEmpty(ctx.env.DSTREAM_REDIS_URL);
  return {
    host,
    port,
    // Absolute, so the start-up line and every hint name it whatever the working directory.
    dataDir: resolve(flags.dataDir ?? defaultHubDataDir(ctx)),
    publicUrl: flags.publicUrl === undefined ? undefined : parsePublicUrl(flags.publicUrl),
    tlsCertFile: flags.tlsCert,
    tlsKeyFile: flags.tlsKey,
    insecureNoTls: flags.insecureNoTls === true,
    redisUrl: redis === undefined ? undefined : parseStoreUrl(redis),
    nodeUrl: nodeUrlFrom(flags, redis),
    mqttListen: mqttListenFrom(flags, host),
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function nodeUrlFrom(flags: HubFlags, redis: string | undefined): URL | undefined {
  if (flags.nodeUrl === undefined) return undefined;
  if (redis === undefined)
    throw new DstreamError('ERR_USAGE', '--node-url is for cluster mode: give --redis too');
  const url = parsePublicUrl(flags.nodeUrl, '--node-url');
  // Streaming URLs name the node so that both sides of a stream meet in one process, and
  // other nodes forward stray stream sockets to it: the balancer's address would do neither.
  if (flags.publicUrl !== undefined && parsePublicUrl(flags.publicUrl).origin === url.origin)
    throw new DstreamError(
      'ERR_USAGE',
      '--node-url must reach this node itself, not the balancer (--public-url)',
      { hint: 'Give each node its own address or balancer port; see docs/cluster.md.' },
    );
  return url;
}

/** The data dir, with the cluster's registry in Redis when --redis is given. */
async function openDataDir(
  s: HubSettings,
  logger: Logger,
  requireCertificate = false,
): Promise<HubDataDir & { readonly cluster: ClusterNode | undefined }> {
  let cluster: ClusterNode | undefined;
  const openRegistry = s.redisUrl
    ? async (): Promise<Registry> => {
        // Loaded only in cluster mode: the Redis client is not needed by anything else.
        const { ClusterNode } = await import('../hub/cluster/node.js');
        cluster = await ClusterNode.connect({ redisUrl: s.redisUrl as URL }, logger);
        return cluster.registry;
      }
    : undefined;
  const names = ['localhost', '127.0.0.1', '::1'];
  if (s.publicUrl) names.push(hostAndPort(s.publicUrl).host);
  if (s.host !== '0.0.0.0' && s.host !== '::') names.push(s.host);
  // The hub's modules (SQLite, MQTT, metrics, ...) load when a hub command runs, not with
  // every command: `dstream connect` starts once per ssh run (docs/architecture.md).
  const { openHubDataDir } = await import('../hub/store/data-dir.js');
  const state = await openHubDataDir(
    {
      dataDir: s.dataDir,
      tlsCertFile: s.tlsCertFile,
      tlsKeyFile: s.tlsKeyFile,
      insecureNoTls: s.insecureNoTls,
      certificateNames: names,
      openRegistry,
      requireExistingCertificate: requireCertificate,
    },
    logger,
  ).catch(async (error: unknown) => {
    await cluster?.close();
    throw error;
  });
  // The public URL is kept in the registry, so later runs (and `hub init`) hand out the same address.
  if (s.publicUrl) await state.registry.setSetting(publicUrlSetting, s.publicUrl.origin);
  return { ...state, cluster };
}

/** Close the registry, and the cluster connection if there is one. */
async function closeState(state: {
  registry: Registry;
  cluster: ClusterNode | undefined;
}): Promise<void> {
  state.registry.close();
  await state.cluster?.close();
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
  const asked = settingsFrom(flags, ctx);
  // Strings come from how the hub serves, not from the flags given here: a hub started with
  // --listen, --tls-cert or --insecure-no-tls recorded that, and init may be run without them.
  const record = readServingRecord(asked.dataDir);
  const request = servingRequest(flags.listen !== undefined, asked);
  const problem = record && servingContradiction(record, request);
  if (problem) throw contradiction(problem, asked.dataDir);
  const s = record ? withRecord(asked, record) : asked;
  const state = await openDataDir(s, logger);
  try {
    const tls = servingTls(s, state);
    const wrongCert =
      record && servingContradiction(record, { ...request, fingerprint: state.tls?.fingerprint });
    if (wrongCert) throw contradiction(wrongCert, s.dataDir);
    const stored = storedPublicUrl(state);
    const publicUrl =
      s.publicUrl ??
      stored ??
      (record ? new URL(record.publicUrl) : derivePublicUrl(s.host, s.port, tls.mode !== 'none'));
    if (!record || publicUrl.origin !== record.publicUrl) {
      if (record)
        logger.warn(
          `connection strings now name ${publicUrl.origin} (was ${record.publicUrl}); a running hub hands it out in device strings after a restart`,
        );
      const from = (s.publicUrl ?? stored) ? 'public-url' : (record?.publicUrlFrom ?? 'listen');
      writeServingRecord(s.dataDir, servingRecord(s, tls, publicUrl, s.port, from));
    }
    const address = addressFor(publicUrl, state);
    ctx.stdout(
      formatServiceConnectionString(address, state.servicePolicy.name, state.servicePolicy.key) +
        '\n',
    );
    // Where devices get their agent, for a person at a terminal; scripts that read stderr
    // (or capture stdout only) see nothing more than the string.
    if (ctx.stderrIsTty)
      ctx.stderr(
        `devices get the agent from ${new URL('/agent/dstream-agent.mjs', publicUrl).href} (\`dstream device add\` prints the lines to fetch and run it)\n`,
      );
  } finally {
    await closeState(state);
  }
}

/** `dstream hub`: initialise on first start, then serve until SIGINT/SIGTERM. */
export async function runHub(
  flags: HubFlags,
  ctx: CommandContext,
  version = 'unknown',
): Promise<void> {
  const logger = commandLogger(ctx, flags);
  const s = settingsFrom(flags, ctx);
  const consoleListen = consoleListenFrom(flags);
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
    ...(flags.rawEofLinger && {
      rawEofLingerMs: parseSeconds(flags.rawEofLinger, '--raw-eof-linger', 0.1, 3600),
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
    ...(flags.keepAliveTimeout && {
      keepAliveTimeoutMs: parseSeconds(flags.keepAliveTimeout, '--keep-alive-timeout'),
    }),
    maxConnections: maxConnectionsFrom(
      flags.maxConnections === undefined
        ? undefined
        : parseCount(flags.maxConnections, '--max-connections'),
      openFileLimit(),
    ),
    ...(flags.proxyProtocolFrom !== undefined && {
      proxyProtocolFrom: parseTrustedSources(flags.proxyProtocolFrom),
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
  // A cluster node never makes its own certificate: clients pin one for the whole cluster.
  const state = await openDataDir(s, logger, s.redisUrl !== undefined);
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
    await closeState(state);
    throw new DstreamError('ERR_DATA_DIR', `cannot open the audit log: ${describeError(error)}`, {
      cause: error,
    });
  }
  ctx.onHangup(() => audit.reopen());
  // GET /audit and the console show the newest records, from before a restart too.
  const { AuditTrail } = await import('../hub/store/audit-trail.js');
  const auditTrail = new AuditTrail();
  if (auditWhere === 'file' || auditWhere === 'both') {
    try {
      for (const record of readAuditTail(join(s.dataDir, 'audit.log'), auditTrail.size))
        auditTrail.add(record);
    } catch (error) {
      logger.warn('cannot read the audit log back; GET /audit starts empty', {
        error: describeError(error),
      });
    }
  }
  if (state.created) logger.info('initialised a new hub', { dataDir: s.dataDir });
  if (s.insecureNoTls)
    logger.warn(
      'TLS IS OFF (--insecure-no-tls): credentials and traffic travel in clear text. Only run this behind a TLS-terminating load balancer.',
    );
  const publicUrl = s.publicUrl ?? storedPublicUrl(state);
  let hub;
  try {
    const { startHub } = await import('../hub/server.js');
    hub = await startHub(
      {
        host: s.host,
        port: s.port,
        registry: state.registry,
        tls: state.tls,
        publicUrl,
        audit,
        auditTrail,
        version,
        console: consoleListen,
        metrics,
        cluster: state.cluster,
        nodeUrl: s.nodeUrl,
        mqtt: s.mqttListen && { listen: s.mqttListen },
        resume: {
          key: state.resumeKey,
          windowMs:
            flags.resumeWindow === undefined
              ? undefined
              : parseSeconds(flags.resumeWindow, '--resume-window'),
        },
        ...tuning,
      },
      logger,
    );
  } catch (error) {
    await closeState(state);
    throw error;
  }
  try {
    recordServing(s, state, hub, (s.publicUrl ?? storedPublicUrl(state)) !== undefined, logger);
  } catch (error) {
    await hub.close();
    await closeState(state);
    throw error;
  }
  const scheme = state.tls ? 'https' : 'http';
  const bound = `${scheme}://${s.host.includes(':') ? `[${s.host}]` : s.host}:${hub.port}`;
  logger.info(`hub listening on ${bound}`, {
    port: hub.port,
    publicUrl: hub.publicUrl.origin,
    dataDir: s.dataDir,
    maxConnections: tuning.maxConnections,
    ...(flags.proxyProtocolFrom !== undefined && { proxyProtocolFrom: flags.proxyProtocolFrom }),
  });
  if (s.mqttListen && hub.mqttPort !== undefined) {
    const h = s.mqttListen.host;
    logger.info(
      `mqtt (Azure's device protocol) listening on ${state.tls ? 'mqtts' : 'mqtt'}://${h.includes(':') ? `[${h}]` : h}:${hub.mqttPort}, and over WebSockets at ${bound}/$iothub/websocket`,
      { port: hub.mqttPort },
    );
  }
  if (hub.consoleUrl)
    logger.info(`console at ${hub.consoleUrl.href} (sign in with a service connection string)`, {
      consoleUrl: hub.consoleUrl.href,
    });
  if (hub.agentFile.file())
    logger.info(
      `agent for devices at ${new URL('/agent/dstream-agent.mjs', hub.publicUrl).href} (\`dstream device add\` prints how to fetch and run it)`,
    );
  if (state.tls)
    logger.info(`TLS certificate SHA-256 fingerprint ${formatFingerprint(state.tls.fingerprint)}`);
  // The data dir records how this hub serves, so init needs only where to find the registry;
  // a Redis password is not printed (give it, or set DSTREAM_REDIS_URL).
  const redisFlag = s.redisUrl ? ` --redis ${s.redisUrl.password ? '<url>' : s.redisUrl.href}` : '';
  logger.info(
    `service connection string: run \`dstream hub init --data-dir ${s.dataDir}${redisFlag}\``,
  );
  await serveUntilStopped(ctx, logger, async () => {
    // Graceful: no new streams, devices told to go elsewhere, active streams may finish.
    // A second SIGINT/SIGTERM ends at once (src/cli.ts).
    await hub.drain(drainTimeoutMs);
    await audit.close();
    await closeState(state);
  });
}

function hubOptions(cmd: Command): Command {
  return cmd
    .option('--listen <host:port>', `address and port to listen on (default: ${defaultListen})`)
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
      '--mqtt-listen <host:port>',
      `Azure's device protocol, MQTT 3.1.1 over TLS, for devices on Azure's device SDKs (default: the --listen host, port ${defaultMqttPort}; skipped with a warning when that port is taken)`,
    )
    .option('--no-mqtt', 'no MQTT: neither its TLS listener nor MQTT over WebSockets')
    .option(
      '--resume-window <seconds>',
      'how long a resumable stream whose socket was lost waits for its ends (default: 120)',
    )
    .option(
      '--insecure-no-tls',
      'serve plain HTTP/WebSocket (only behind a TLS-terminating load balancer)',
    )
    .option(
      '--redis <url>',
      'cluster mode: share registry and presence through this Redis (redis://host:port, rediss://, unix:/path; default: $DSTREAM_REDIS_URL)',
    );
}

export function registerHubCommand(program: Command, ctx: CommandContext): void {
  const hub = withHeartbeatOption(withLogOptions(hubOptions(program.command('hub'))))
    .option('--drain-timeout <seconds>', 'on SIGTERM, how long active streams may finish', '30')
    .option('--max-streams <n>', 'streams open on the hub at once (default: 8000)')
    .option('--max-streams-per-device <n>', 'streams open to one device at once (default: 1000)')
    .option(
      '--max-pending-per-device <n>',
      'stream requests waiting for one device to answer (default: 64)',
    )
    .option('--max-token-lifetime <seconds>', 'refuse tokens valid for longer (default: 86400)')
    .option('--auth-failures-per-minute <n>', 'per address, then 429 (default: 30)')
    .option('--max-unauthenticated-per-ip <n>', 'connections not yet authenticated (default: 256)')
    .option('--max-frame-bytes <n>', 'largest stream frame accepted (default: 4194304)')
    .option('--max-control-message-bytes <n>', 'largest control message (default: 16384)')
    .option(
      '--raw-eof-linger <seconds>',
      'after a half-close toward a raw (Azure) peer, close the stream once that peer is quiet this long (default: 2)',
    )
    .option(
      '--audit-log <where>',
      'one JSON line per stream attempt: file (data dir), stderr, both, off',
      'file',
    )
    .option(
      '--headers-timeout <seconds>',
      'time a client has to send request headers (default: 15)',
    )
    .option(
      '--keep-alive-timeout <seconds>',
      'close a kept-alive HTTP connection idle this long (default: 5)',
    )
    .option(
      '--proxy-protocol-from <cidrs>',
      'balancers (comma-separated addresses or CIDRs) whose PROXY protocol v1/v2 header gives the client address',
    )
    .option(
      '--max-connections <n>',
      'open connections at most (default: what the descriptor limit allows, less a reserve)',
    )
    .option(
      '--metrics <who>',
      'who may GET /metrics (Prometheus): local (loopback clients), open, off',
      'local',
    )
    .option(
      '--node-url <url>',
      'cluster mode: where clients and other nodes reach this node (default: the listen address)',
    )
    .description('run the hub: device registry, stream orchestration and the streaming endpoint')
    .addHelpText(
      'after',
      '\nExamples:\n  dstream hub --listen 0.0.0.0:8443 --data-dir /var/lib/dstream\n' +
        '  dstream hub --listen 10.0.0.5:8443 --redis redis://10.0.0.2:6379 --node-url wss://node1.example.com:8443',
    )
    .option(
      '--console-listen <host:port>',
      `the operator console (/console/) and the REST API on their own listener (default: ${defaultConsoleListen}; skipped with a warning when that port is taken)`,
    )
    .option('--no-console', 'no operator console and no listener for it')
    .action((flags: HubFlags) => runHub(flags, ctx, program.version()));
  hubOptions(hub.command('init'))
    .description('create the hub data dir and print the service connection string on stdout')
    .option('-v, --verbose', 'log what is created')
    .addHelpText(
      'after',
      '\nExample:\n  export DSTREAM_SERVICE_CONNECTION_STRING="$(dstream hub init)"\n\n' +
        'Devices get the agent from the hub itself, as one file: https://<hub>/agent/dstream-agent.mjs\n' +
        '(`dstream device add` prints the two lines that fetch, check and run it).',
    )
    .action((flags: HubFlags) => runHubInit(flags, ctx));
}
