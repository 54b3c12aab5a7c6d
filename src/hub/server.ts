import { webSocketScheme } from './base/http-util.js';
import { describeError } from '../errors.js';
import type { Server } from 'node:http';
import type { AddressInfo, BlockList, Socket } from 'node:net';
import type { HubAddress } from '../auth/connection-string.js';
import type { Logger } from '../log/logger.js';
import { defaultHeartbeatMs, Heartbeat } from '../net/heartbeat.js';
import { listen } from '../net/listen.js';
import { ConnectionCeiling } from './admission/connection-ceiling.js';
import { defaultGuardOptions, Guard, type GuardOptions } from './admission/guard.js';
import { createProxyFront } from './admission/proxy-protocol-front.js';
import type { HubCluster } from './cluster/hub-cluster.js';
import { ControlWebSocketGateway } from './devices/control-websocket.js';
import { DeviceLinks } from './devices/device-links.js';
import { createMqttGateway, listenMqtt } from './devices/mqtt-gateway.js';
import type { MetricsAccess } from './http/health.js';
import { createHubServer } from './http/http-server.js';
import { derivePublicUrl, hostAndPort } from './http/public-url.js';
import {
  initiationContext,
  requestRoutes,
  upgradeRoutes,
  type HubAddresses,
  type HubParts,
  type RequestHandler,
  type UpgradeHandler,
} from './http/routes.js';
import { loadConsoleAssets, redirectToConsole, serveConsoleAsset } from './http/console-assets.js';
import { AgentFileServer, publicKeyPin } from './http/agent-file.js';
import { EventFeed } from './http/event-feed.js';
import type { HubIdentity } from './http/hub-api.js';
import { RouteTable } from './http/route-table.js';
import { HubActivity } from './observe/activity.js';
import { HubMetrics } from './observe/metrics.js';
import { noAuditLog, type AuditLog } from './store/audit-log.js';
import { AuditTrail } from './store/audit-trail.js';
import type { HubTlsIdentity } from './store/data-dir.js';
import type { Registry } from './store/registry.js';
import { defaultLimits, type HubLimits } from './streams/limits.js';
import { auditStreamEnds } from './streams/stream-audit.js';
import { StreamEndpoint } from './streams/stream-endpoint.js';
import { MuxGateway } from './streams/mux-gateway.js';
import { initiateStream, type InitiationAnswer } from './streams/stream-initiation.js';
import { offerStream } from './streams/stream-offer.js';

export type { MetricsAccess } from './http/health.js';

export interface HubOptions {
  /** Listen address and port (0 picks a free port). */
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  /** null serves plain HTTP/WS (--insecure-no-tls). */
  readonly tls: HubTlsIdentity | null;
  /** Where clients reach the hub; derived from the bound address when absent. */
  readonly publicUrl?: URL | undefined;
  /** Stream pairing window and token lifetime (default 60 s). */
  readonly pairTimeoutMs?: number | undefined;
  /** Ping interval for control and stream sockets (default 20 s); two missed pings drop one. */
  readonly heartbeatMs?: number | undefined;
  readonly limits?: Partial<HubLimits> | undefined;
  /** Token lifetime bound and per-address limits (auth failures, unauthenticated connections). */
  readonly guard?: Partial<GuardOptions> | undefined;
  /** Largest control message (default 16 KiB) and stream frame (default 4 MiB), in bytes. */
  readonly maxControlMessageBytes?: number | undefined;
  readonly maxFrameBytes?: number | undefined;
  /** A raw peer quiet this long after the other side's half-close ends the stream (2 s). */
  readonly rawEofLingerMs?: number | undefined;
  /** Time a client may take to send its request headers (default 15 s). */
  readonly headersTimeoutMs?: number | undefined;
  /** An idle kept-alive HTTP connection is closed after this long (default 5 s). */
  readonly keepAliveTimeoutMs?: number | undefined;
  /**
   * Balancers whose PROXY protocol header (v1/v2) names the client: limits, throttles and the
   * audit log then use the client's address. Anyone else sending such a header is refused.
   */
  readonly proxyProtocolFrom?: BlockList | undefined;
  /** Open connections at most; past it new ones are closed at once (default: no ceiling). */
  readonly maxConnections?: number | undefined;
  /** Where one JSON line per stream attempt goes (default: nowhere). */
  readonly audit?: AuditLog | undefined;
  /** Who may GET /metrics: loopback clients only (default), anyone, or nobody. */
  readonly metrics?: MetricsAccess | undefined;
  /** Membership of a cluster (the registry is then the cluster's shared one). */
  readonly cluster?: HubCluster | undefined;
  /** This node's own URL in a cluster (default: derived from the bound address). */
  readonly nodeUrl?: URL | undefined;
  /**
   * Azure's device protocol beside the control WebSocket: MQTT over WebSockets at
   * /$iothub/websocket on the main port, and MQTT over TLS where `listen` says (IoT Hub's
   * 8883). Absent: no MQTT at all (--no-mqtt).
   */
  readonly mqtt?:
    | {
        readonly listen?:
          | {
              readonly host: string;
              readonly port: number;
              /**
               * The user did not ask for this listener (the default 8883): when its port is
               * taken or not allowed, the hub warns and serves without it.
               */
              readonly optional?: boolean | undefined;
            }
          | undefined;
      }
    | undefined;
  /**
   * Resumable streams between dstream's ends (src/stream/): the data dir's ticket key, and
   * how long a suspended stream waits for its halves (default 120 s). Absent: not offered.
   */
  readonly resume?: { readonly key: Buffer; readonly windowMs?: number | undefined } | undefined;
  /**
   * The operator console (/console) and the REST API on a listener of their own (TLS as the
   * hub's). `optional`: the user did not ask for this address (the default), so a port that
   * is taken is a warning, not a failure. Absent: no console (--no-console).
   */
  readonly console?:
    | { readonly host: string; readonly port: number; readonly optional?: boolean | undefined }
    | undefined;
  /** The newest audit records, for GET /audit (a command preloads it from the audit file). */
  readonly auditTrail?: AuditTrail | undefined;
  /** What GET /hub reports as the version. */
  readonly version?: string | undefined;
  /** How often the hub samples its activity for GET /hub's history (default 5 s). */
  readonly activitySampleMs?: number | undefined;
}

export interface RunningHub {
  /** The bound port. */
  readonly port: number;
  /** The MQTT over TLS listener's bound port, when there is one. */
  readonly mqttPort: number | undefined;
  /** The console listener's URL (…/console/), when there is one. */
  readonly consoleUrl: URL | undefined;
  readonly publicUrl: URL;
  /** Host, port and trust data for the connection strings this hub hands out. */
  readonly address: HubAddress;
  /** The devices online on this hub (node), by their links. */
  readonly devices: DeviceLinks;
  readonly streams: StreamEndpoint;
  /** Carrier connections of the multiplexed carrier. */
  readonly mux: MuxGateway;
  readonly guard: Guard;
  readonly metrics: HubMetrics;
  /** The last hour's samples (GET /hub) and per-device bytes. */
  readonly activity: HubActivity;
  /** The clients of GET /events. */
  readonly feed: EventFeed;
  /** The single-file agent served at /agent/. */
  readonly agentFile: AgentFileServer;
  /**
   * Graceful shutdown: take no new streams or devices, tell devices to go elsewhere, let the
   * active streams finish for up to `timeoutMs`, then close. Resolves when closed.
   */
  drain(timeoutMs: number): Promise<void>;
  /** Stop listening and close every connection and stream. */
  close(): Promise<void>;
}

/**
 * Start a hub: build its parts, route its HTTP API and WebSocket endpoints to them, listen
 * (and, in a cluster, join it). Wiring only: each part lives in the folder of its role.
 */
export async function startHub(options: HubOptions, logger: Logger): Promise<RunningHub> {
  const { registry, cluster } = options;
  const limits: HubLimits = { ...defaultLimits, ...options.limits };
  const headersTimeoutMs = options.headersTimeoutMs ?? 15_000;
  const heartbeat = new Heartbeat(options.heartbeatMs ?? defaultHeartbeatMs, 2, () =>
    logger.debug('dropped a silent socket (missed two pings)'),
  );
  // Gauges are read at scrape time; `control` and `streams` exist by then.
  const metrics = new HubMetrics({
    connectedDevices: () => control.size,
    devicesByProtocol: () => control.countByProtocol(),
    activeStreams: () => streams.size,
    carriers: () => ({ connections: mux.size, substreams: mux.substreams }),
    deviceRequests: () => control.requestsSent,
    bytesRelayed: () => streams.bytesRelayed(),
    cluster: cluster && (() => cluster.stats()),
  });
  const guard = new Guard(registry, logger, { ...defaultGuardOptions, ...options.guard }, (kind) =>
    metrics.authFailure(kind),
  );
  const control = new DeviceLinks(registry, logger);
  const controlSockets = new ControlWebSocketGateway(
    control,
    heartbeat,
    logger,
    options.maxControlMessageBytes,
  );
  const streams = new StreamEndpoint(logger, {
    pairTimeoutMs: options.pairTimeoutMs,
    maxFrameBytes: options.maxFrameBytes,
    rawEofLingerMs: options.rawEofLingerMs,
    heartbeat,
    guard,
    idPrefix: cluster?.nodeId,
    resume: options.resume && {
      key: options.resume.key,
      windowMs: options.resume.windowMs ?? 120_000,
      deviceAllowed: (deviceId) => registry.getDevice(deviceId)?.status === 'enabled',
    },
  });
  const mux: MuxGateway = new MuxGateway(
    {
      streams,
      heartbeat,
      guard,
      cluster,
      devices: control,
      // Called once the hub listens, when `parts` (below) is complete.
      initiate: (ask): Promise<InitiationAnswer | undefined> =>
        initiateStream(initiationContext(parts), ask),
    },
    logger,
  );
  // Another cluster node disabled, removed or re-keyed a device: close what it revokes here.
  registry.watch?.((change) => {
    control.disconnect(change.deviceId, change.kind.replace('device-', 'device '));
    if (change.kind !== 'device-key-changed') streams.closeDevice(change.deviceId);
  });
  const trail = options.auditTrail ?? new AuditTrail();
  const audit = metrics.counting(trail.tee(options.audit ?? noAuditLog));
  const activity = new HubActivity(streams, options.activitySampleMs);
  const feed = new EventFeed(guard, logger);
  const agentFile = new AgentFileServer(
    undefined,
    options.tls?.selfSigned ? publicKeyPin(options.tls.cert) : undefined,
  );
  const startedAt = Date.now();
  // What a page or script watching GET /events learns without polling.
  control.watch((deviceId) =>
    feed.publish({ type: 'device', data: { deviceId, online: control.isOnline(deviceId) } }),
  );
  trail.watch((entry) =>
    feed.publish({ type: 'audit', data: { seq: entry.seq, ...entry.record } }),
  );
  streams.on('stream-end', (info) => {
    activity.ended(info);
    feed.publish({
      type: 'stream',
      data: {
        id: info.id,
        deviceId: info.deviceId,
        change: info.suspended ? 'suspended' : info.gaveUp ? 'gave-up' : 'ended',
      },
    });
  });
  streams.on('stream-resumed', (info) =>
    feed.publish({
      type: 'stream',
      data: { id: info.id, deviceId: info.deviceId, change: 'resumed' },
    }),
  );
  const ticker = setInterval(
    () =>
      feed.publish({
        type: 'tick',
        data: {
          time: new Date().toISOString(),
          openStreams: streams.size,
          devicesOnline: control.size,
        },
      }),
    2_000,
  );
  ticker.unref();
  streams.on('stream-resumed', () => metrics.streamResumed());
  streams.on('stream-replayed', (info) => metrics.streamReplayed(info.bytes));
  auditStreamEnds(streams, audit);
  let draining = false;

  // Count connections per address until they authenticate something; drop the excess at once.
  // Every TCP connection, so close() can end the ones HTTP does not track (mid-handshake, idle).
  // The MQTT listener's connections count against the same ceiling and per-address caps.
  const sockets = new Set<Socket>();
  const ceiling = new ConnectionCeiling(options.maxConnections ?? Infinity, logger);
  const admit = (socket: Socket): boolean => {
    if (!ceiling.admit(sockets.size) || !guard.admit(socket)) return false;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    return true;
  };
  const mqtt = options.mqtt
    ? createMqttGateway({
        link: {
          logger,
          authenticate: (socket, token, deviceId) => guard.deviceToken(socket, token, deviceId),
          attach: (deviceId, link) => control.attach(deviceId, link),
          accepting: () => !draining,
          noisy: guard.noisy,
          audit,
        },
        tls: options.tls,
        admit,
        timeoutMs: headersTimeoutMs,
        logger,
      })
    : undefined;

  // Known once listening (the public URL may name the bound port), before the first request.
  const known: { addresses?: HubAddresses } = {};
  const parts: HubParts = {
    registry,
    control,
    controlSockets,
    streams,
    mux,
    guard,
    metrics,
    metricsAccess: options.metrics ?? 'local',
    audit,
    trail,
    activity,
    feed,
    agentFile,
    identity: (): HubIdentity => ({
      version: options.version ?? 'unknown',
      startedAt,
      node: cluster?.nodeId,
      listeners: {
        api: known.addresses?.publicUrl.href ?? '',
        ...(cluster && known.addresses && { node: known.addresses.nodeUrl.href }),
        ...(consoleUrl && { console: consoleUrl.href }),
        ...(mqttPort !== undefined && { mqtt: String(mqttPort) }),
      },
      resumeWindowMs: options.resume ? (options.resume.windowMs ?? 120_000) : undefined,
    }),
    limits,
    logger,
    cluster,
    mqtt,
    draining: () => draining,
    addresses: (): HubAddresses => {
      if (!known.addresses) throw new Error('the hub is not listening yet');
      return known.addresses;
    },
  };
  const requests = requestRoutes(parts);
  const server: Server = createHubServer({
    tls: options.tls,
    headersTimeoutMs,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? 5_000,
    requests,
    upgrades: upgradeRoutes(parts),
    logger,
  });
  server.on('connection', (socket: Socket) => {
    if (!admit(socket)) socket.destroy();
  });
  // The console's own listener: its page and files, then the same REST API (the page's
  // requests stay on its origin), no WebSocket endpoints. Files are read now: a hub whose
  // console cannot be served says so at start, not at the first page load.
  let consoleServer: Server | undefined;
  if (options.console) {
    const assets = loadConsoleAssets();
    const consoleRoutes = new RouteTable<RequestHandler>()
      .add('*', '/console', redirectToConsole)
      .add('*', '/', redirectToConsole)
      .add('*', '/console/:file', (req, res, p) =>
        serveConsoleAsset(assets, req, res, p.file ?? ''),
      )
      .add('*', '/console/vendor/:file', (req, res, p) =>
        serveConsoleAsset(assets, req, res, `vendor/${p.file ?? ''}`),
      )
      .addAll(requests);
    consoleServer = createHubServer({
      tls: options.tls,
      headersTimeoutMs,
      keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? 5_000,
      requests: consoleRoutes,
      upgrades: new RouteTable<UpgradeHandler>(),
      logger,
    });
    consoleServer.on('connection', (socket: Socket) => {
      if (!admit(socket)) socket.destroy();
    });
  }
  let consoleUrl: URL | undefined;
  // Behind a balancer that speaks the PROXY protocol, a TCP listener in front reads its header
  // first and hands each connection on; otherwise the HTTP(S) server listens itself.
  const listener = options.proxyProtocolFrom
    ? createProxyFront({
        trusted: options.proxyProtocolFrom,
        server,
        tls: options.tls !== null,
        timeoutMs: headersTimeoutMs,
        logger,
      })
    : server;

  let closing: Promise<void> | undefined;
  /** Stop listening and end everything; `cluster` only once it was joined. */
  const shutdown = (leaveCluster: boolean): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      heartbeat.stop();
      clearInterval(ticker);
      activity.close();
      feed.close();
      consoleServer?.close();
      consoleServer?.closeAllConnections();
      let pending = leaveCluster && cluster ? 2 : 1;
      const done = (): void => void (--pending === 0 && resolve());
      // Give up the lease and registrations first, so other nodes stop routing here.
      if (leaveCluster) cluster?.close().then(done, done);
      if (listener !== server) listener.close();
      server.close(done);
      control.close();
      controlSockets.close();
      mqtt?.close();
      streams.close();
      mux.close();
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    }));
  const close = (): Promise<void> => shutdown(true);

  await listen(
    listener,
    options.host,
    options.port,
    'Another process uses that port; pick another with --listen.',
  );
  listener.on('error', (error) => logger.error('server error', { error: error.message }));
  const port = (listener.address() as AddressInfo).port;
  const addresses = (known.addresses = addressesOf(options, port));
  let mqttPort: number | undefined;
  try {
    if (mqtt && options.mqtt?.listen)
      mqttPort = await listenMqtt(mqtt, options.mqtt.listen, logger);
    if (consoleServer && options.console)
      consoleUrl = await listenConsole(
        consoleServer,
        options.console,
        options.tls !== null,
        logger,
      );
    if (cluster) {
      const node = addresses.nodeUrl;
      controlSockets.announceCarrierOrigin(`${webSocketScheme(node)}//${node.host}`);
      const offerContext = {
        control,
        streams,
        streamBaseUrl: addresses.nodeUrl,
        limits,
        logger,
        draining: () => draining,
      };
      await cluster.attach({
        nodeUrl: addresses.nodeUrl,
        // The nodes serve one certificate: another node is verified by exactly the one this node
        // serves, CA-issued or not (a node need not trust a private CA itself).
        trust: { tls: options.tls !== null, fingerprint: options.tls?.fingerprint },
        devices: control,
        resumeWindowMs: options.resume ? (options.resume.windowMs ?? 120_000) : undefined,
        offer: (request, signal) => offerStream(offerContext, request, signal),
        view: {
          devices: () => control.describe(),
          streams: () => streams.list(),
          bytesLastHour: () => activity.bytesLastHour(),
          endStream: (id, reason) => streams.terminate(id, reason) !== undefined,
        },
      });
    }
  } catch (error) {
    // The cluster was not joined: its owner closes it.
    await shutdown(false);
    throw error;
  }

  const drain = async (timeoutMs: number): Promise<void> => {
    draining = true;
    if (cluster) {
      // Out of the cluster's routing first, so that the halves of the streams handed over
      // below meet on a node that stays, and devices register there.
      await cluster
        .withdraw()
        .catch((error: unknown) =>
          logger.warn('cannot withdraw from the cluster', { error: describeError(error) }),
        );
      const handed = streams.handOver();
      if (handed > 0)
        logger.info('draining: resumable streams handed over to the other nodes', {
          streams: handed,
        });
    }
    control.goAway('hub shutting down');
    if (streams.size > 0) {
      logger.info('draining: waiting for active streams to finish', {
        streams: streams.size,
        timeoutMs,
      });
      await streams.whenEmpty(timeoutMs);
      if (streams.size > 0)
        logger.warn('drain timeout: closing the remaining streams', { streams: streams.size });
    }
    await close();
  };
  return {
    port,
    mqttPort,
    consoleUrl,
    publicUrl: addresses.publicUrl,
    address: addresses.address,
    devices: control,
    streams,
    mux,
    guard,
    metrics,
    activity,
    feed,
    agentFile,
    drain,
    close,
  };
}

/**
 * Listen for the console; its URL, or undefined when an address the user did not ask for (the
 * default) is taken or not allowed: the hub then serves without a console and says so.
 */
async function listenConsole(
  server: Server,
  where: NonNullable<HubOptions['console']>,
  tls: boolean,
  logger: Logger,
): Promise<URL | undefined> {
  try {
    await listen(
      server,
      where.host,
      where.port,
      'Another process uses that port; pick another with --console-listen, or --no-console.',
    );
  } catch (error) {
    if (!where.optional) throw error;
    logger.warn('console not started: its default address is not available', {
      address: `${where.host}:${where.port}`,
      error: describeError(error),
      hint: 'pick an address with --console-listen, or turn it off with --no-console',
    });
    return undefined;
  }
  server.on('error', (error) => logger.error('console server error', { error: error.message }));
  const port = (server.address() as AddressInfo).port;
  const host = where.host === '0.0.0.0' || where.host === '::' ? 'localhost' : where.host;
  return new URL(
    `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}/console/`,
  );
}

/** Where clients reach a hub bound to `port`, and where its streaming URLs point. */
function addressesOf(options: HubOptions, port: number): HubAddresses {
  const tls = options.tls !== null;
  const publicUrl = options.publicUrl ?? derivePublicUrl(options.host, port, tls);
  const { host, port: publicPort } = hostAndPort(publicUrl);
  return {
    publicUrl,
    // Where this process itself is reached: streaming URLs name it (in a cluster, the node).
    nodeUrl: options.cluster
      ? (options.nodeUrl ?? derivePublicUrl(options.host, port, tls))
      : publicUrl,
    address: {
      host,
      port: publicPort,
      tls: publicUrl.protocol === 'https:',
      // Pin only what this process serves itself; behind a TLS-terminating proxy the proxy's cert counts.
      fingerprint: options.tls?.selfSigned ? options.tls.fingerprint : undefined,
    } satisfies HubAddress,
  };
}
