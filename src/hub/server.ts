import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, BlockList, Socket } from 'node:net';
import { createProxyFront } from './admission/proxy-protocol-front.js';
import { createMqttGateway } from './devices/mqtt-gateway.js';
import { ConnectionCeiling } from './admission/connection-ceiling.js';
import { listen } from '../net/listen.js';
import type { Duplex } from 'node:stream';
import { formatHostPort, type HubAddress } from '../auth/connection-string.js';
import { DstreamError, describeError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { deviceIdProblem, moduleIdProblem, streamNameProblem } from '../protocol/identifiers.js';
import { defaultGuardOptions, Guard, type GuardOptions } from './admission/guard.js';
import { ControlEndpoint } from './devices/control-endpoint.js';
import type { HubTlsIdentity } from './store/data-dir.js';
import {
  closeSoon,
  parseRequestPath,
  refuseUpgrade,
  sendError,
  sendJson,
} from './base/http-util.js';
import { derivePublicUrl, hostAndPort } from './http/public-url.js';
import { handleRegistryApi } from './http/registry-api.js';
import { handleTwinApi } from './http/twin-api.js';
import { handlePolicyApi } from './http/policy-api.js';
import type { Registry } from './store/registry.js';
import { handleStreamInitiation } from './streams/stream-initiation.js';
import { StreamEndpoint, type StreamEndInfo } from './streams/stream-endpoint.js';
import { noAuditLog, type AuditLog } from './store/audit-log.js';
import { defaultLimits, type HubLimits } from './streams/limits.js';
import { defaultHeartbeatMs, Heartbeat } from '../net/heartbeat.js';
import { HubMetrics } from './observe/metrics.js';
import { forwardedHeader, type HubCluster } from './cluster/hub-cluster.js';
import { offerStream } from './streams/stream-offer.js';
import { isLoopbackAddress } from './base/http-util.js';

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
}

export type MetricsAccess = 'local' | 'open' | 'off';

export interface RunningHub {
  /** The bound port. */
  readonly port: number;
  /** The MQTT over TLS listener's bound port, when there is one. */
  readonly mqttPort: number | undefined;
  readonly publicUrl: URL;
  /** Host, port and trust data for the connection strings this hub hands out. */
  readonly address: HubAddress;
  readonly control: ControlEndpoint;
  readonly streams: StreamEndpoint;
  readonly guard: Guard;
  readonly metrics: HubMetrics;
  /**
   * Graceful shutdown: take no new streams or devices, tell devices to go elsewhere, let the
   * active streams finish for up to `timeoutMs`, then close. Resolves when closed.
   */
  drain(timeoutMs: number): Promise<void>;
  /** Stop listening and close every connection and stream. */
  close(): Promise<void>;
}

/** Start a hub: main endpoint (registry API, control channel, stream initiation) and streaming endpoint. */
export async function startHub(options: HubOptions, logger: Logger): Promise<RunningHub> {
  const { registry } = options;
  const limits: HubLimits = { ...defaultLimits, ...options.limits };
  const heartbeat = new Heartbeat(options.heartbeatMs ?? defaultHeartbeatMs, 2, () =>
    logger.debug('dropped a silent socket (missed two pings)'),
  );
  // Gauges are read at scrape time; `control` and `streams` exist by then.
  const metrics = new HubMetrics({
    connectedDevices: () => control.size,
    devicesByProtocol: () => control.countByProtocol(),
    activeStreams: () => streams.size,
    bytesRelayed: () => streams.bytesRelayed(),
    cluster: options.cluster && (() => (options.cluster as HubCluster).stats()),
  });
  const guard = new Guard(registry, logger, { ...defaultGuardOptions, ...options.guard }, (kind) =>
    metrics.authFailure(kind),
  );
  const control = new ControlEndpoint(registry, logger, heartbeat, options.maxControlMessageBytes);
  const { cluster } = options;
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
  // Another cluster node disabled, removed or re-keyed a device: close what it revokes here.
  registry.watch?.((change) => {
    control.disconnect(change.deviceId, change.kind.replace('device-', 'device '));
    if (change.kind !== 'device-key-changed') streams.closeDevice(change.deviceId);
  });
  let draining = false;
  const auditSink = options.audit ?? noAuditLog;
  // Every stream attempt yields exactly one audit record, so outcomes are counted here.
  const audit: AuditLog = {
    ...auditSink,
    write: (record) => {
      metrics.streamEnded(record.outcome);
      auditSink.write(record);
    },
  };
  const metricsAccess = options.metrics ?? 'local';
  streams.on('stream-resumed', () => metrics.streamResumed());
  // Accepted streams are audited when they end, with their byte counts and duration.
  streams.on('stream-end', (info: StreamEndInfo) => {
    if (info.cancelled) return;
    audit.write({
      time: new Date(Date.now() - info.durationMs).toISOString(),
      policy: info.origin.policy,
      device: info.deviceId,
      stream: info.name,
      outcome: info.suspended ? 'suspended' : info.paired ? 'completed' : 'dropped',
      reason: info.reason,
      bytesToDevice: info.bytesToDevice,
      bytesFromDevice: info.bytesFromDevice,
      durationMs: info.durationMs,
      remote: info.origin.remote,
    });
  });
  const headersTimeoutMs = options.headersTimeoutMs ?? 15_000;
  // How often Node looks for requests past their header/request timeouts (its default is 30 s).
  const checkEveryMs = Math.min(1000, headersTimeoutMs);
  const server: Server = options.tls
    ? createHttpsServer({
        cert: options.tls.cert,
        key: options.tls.key,
        minVersion: 'TLSv1.2',
        // A connection that never finishes its handshake is as slow as slow headers.
        handshakeTimeout: headersTimeoutMs,
        connectionsCheckingInterval: checkEveryMs,
      })
    : createHttpServer({ connectionsCheckingInterval: checkEveryMs });
  // Slow clients (slowloris) are cut off: headers in 15 s, the whole request in 30 s.
  server.headersTimeout = headersTimeoutMs;
  server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 5_000;
  server.requestTimeout = Math.max(30_000, server.headersTimeout);
  // Node starts the header clock at a request's first byte, so a connection that finishes its
  // TLS handshake and then sends nothing would stay open for ever. It gets the same limit as
  // an idle socket timeout (Node's HTTP server destroys a socket that times out with no request),
  // cleared when its first request or upgrade arrives.
  server.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) =>
    socket.setTimeout(headersTimeoutMs),
  );

  // Filled in once listening: the public URL may depend on the bound port.
  const ctx = {} as { publicUrl: URL; nodeUrl: URL; address: HubAddress };

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = parseRequestPath(req.url);
    if ('problem' in path) return sendError(res, 400, 'ArgumentInvalid', path.problem);
    const seg = path.segments;
    const method = req.method ?? 'GET';
    if (seg.length === 1 && seg[0] === 'healthz' && method === 'GET')
      return sendJson(res, 200, { status: 'ok' });
    // Ready to take new streams and devices: false while draining, so a balancer moves on.
    if (seg.length === 1 && seg[0] === 'readyz' && method === 'GET') {
      if (draining) return sendJson(res, 503, { status: 'draining' });
      // Cut off from the cluster's Redis: local devices still work, but new ones should go
      // to a node that can register them and route to them.
      if (cluster && !cluster.ready()) return sendJson(res, 503, { status: 'redis-unreachable' });
      return sendJson(res, 200, { status: 'ready' });
    }
    if (seg.length === 1 && seg[0] === 'metrics' && method === 'GET' && metricsAccess !== 'off') {
      if (metricsAccess === 'local' && !isLoopbackAddress(req.socket.remoteAddress))
        return sendError(
          res,
          403,
          'Forbidden',
          'metrics are served to loopback clients only (start the hub with --metrics open)',
        );
      const text = await metrics.render();
      res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
      res.end(text);
      return;
    }
    const registryCtx = {
      registry,
      control,
      streams,
      hubAddress: ctx.address,
      logger,
      guard,
      connectedAmong: cluster?.connectedAmong,
    };
    if (seg[0] === 'devices' && seg.length <= 3) {
      const id = seg[1] === '' ? undefined : seg[1];
      return handleRegistryApi(registryCtx, req, res, id, seg[2]);
    }
    if (seg[0] === 'policies' && seg.length <= 2) {
      const name = seg[1] === '' ? undefined : seg[1];
      return handlePolicyApi({ registry, hubAddress: ctx.address, logger, guard }, req, res, name);
    }
    if (seg[0] === 'twins' && seg.length === 2)
      return handleTwinApi(registryCtx, req, res, seg[1] ?? '');
    // IoT Hub's stream initiation, to a device or (IoT Hub's module form) to one of its
    // modules: dstream has no module identities, so a module's stream goes to its device's
    // agent, which judges it by stream name as any other (docs/azure.md).
    const stream =
      seg[0] === 'twins' && seg.length === 4 && seg[2] === 'streams'
        ? { deviceId: seg[1] ?? '', moduleId: undefined, streamName: seg[3] ?? '' }
        : seg[0] === 'twins' && seg.length === 6 && seg[2] === 'modules' && seg[4] === 'streams'
          ? { deviceId: seg[1] ?? '', moduleId: seg[3] ?? '', streamName: seg[5] ?? '' }
          : undefined;
    if (stream) {
      if (method !== 'POST')
        return sendError(res, 405, 'MethodNotAllowed', 'stream initiation is POST');
      const problem =
        deviceIdProblem(stream.deviceId) ??
        (stream.moduleId === undefined ? undefined : moduleIdProblem(stream.moduleId)) ??
        streamNameProblem(stream.streamName);
      if (problem) return sendError(res, 400, 'ArgumentInvalid', problem);
      return handleStreamInitiation(
        {
          registry,
          control,
          streams,
          streamBaseUrl: ctx.nodeUrl,
          logger,
          limits,
          draining: () => draining,
          guard,
          audit,
          metrics,
          route: cluster?.route,
        },
        req,
        res,
        stream.deviceId,
        stream.streamName,
        stream.moduleId,
      );
    }
    return sendError(
      res,
      404,
      'NotFound',
      `no such endpoint: ${method} ${(req.url ?? '/').split('?')[0]?.slice(0, 200) ?? ''}`,
    );
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.socket.setTimeout(0);
    req.on('error', () => undefined);
    onRequest(req, res).catch((error: unknown) => {
      // The cluster's Redis is away: registry writes cannot be made now. Not a bug: 503.
      if (error instanceof DstreamError && error.code === 'ERR_HUB_UNAVAILABLE') {
        logger.warn('request refused', { path: req.url?.split('?')[0], reason: error.message });
        if (res.headersSent) res.destroy();
        else {
          res.setHeader('retry-after', '5');
          sendError(res, 503, 'ServiceUnavailable', error.message);
        }
        return;
      }
      logger.error('request failed', {
        method: req.method,
        path: req.url?.split('?')[0],
        error: describeError(error),
      });
      if (!res.headersSent) sendError(res, 500, 'ServerError', 'internal error');
      else res.destroy();
    });
  });

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = parseRequestPath(req.url);
    if ('problem' in path) return refuseUpgrade(socket, 400, 'ArgumentInvalid', path.problem);
    const seg = path.segments;
    if (seg.length === 3 && seg[0] === 'devices' && seg[2] === 'control') {
      const deviceId = seg[1] ?? '';
      const problem = deviceIdProblem(deviceId);
      if (problem) return refuseUpgrade(socket, 400, 'ArgumentInvalid', problem);
      const auth = guard.device(req, deviceId);
      if (draining) {
        return refuseUpgrade(socket, 503, 'ServiceUnavailable', 'the hub is shutting down');
      }
      if (!auth.ok) {
        guard.noisy.write(
          'warn',
          `device refused ${auth.status}`,
          req.socket.remoteAddress,
          'device connection refused',
          { device: deviceId, remote: req.socket.remoteAddress, reason: auth.message },
        );
        return refuseUpgrade(
          socket,
          auth.status,
          auth.errorCode,
          auth.message,
          auth.status === 429 ? { 'Retry-After': String(auth.retryAfterSeconds) } : {},
        );
      }
      return control.accept(req, socket, head, deviceId);
    }
    if (mqtt && seg.length === 2 && seg[0] === '$iothub' && seg[1] === 'websocket')
      return mqtt.upgrade(req, socket, head);
    if (seg.length === 2 && seg[0] === 'bridges') {
      const id = seg[1] ?? '';
      if (cluster && !streams.isLocal(id)) {
        // One hop at most: a socket another node forwarded here is not sent on again.
        if (req.headers[forwardedHeader] !== undefined)
          return refuseUpgrade(socket, 404, 'StreamNotFound', 'no such stream on this node');
        return cluster.forward(req, socket, head, id);
      }
      return streams.accept(req, socket, head, id);
    }
    refuseUpgrade(socket, 404, 'NotFound', 'no such WebSocket endpoint');
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    req.socket.setTimeout(0);
    socket.on('error', (error) => logger.debug('upgrade socket error', { error: error.message }));
    try {
      onUpgrade(req, socket, head);
    } catch (error) {
      // A bug or a registry failure must cost one connection, not the hub.
      logger.error('upgrade failed', { path: req.url?.split('?')[0], error: describeError(error) });
      refuseUpgrade(socket, 500, 'ServerError', 'internal error');
    }
  });

  // Count connections per address until they authenticate something; drop the excess at once.
  // Every TCP connection, so close() can end the ones HTTP does not track (mid-handshake, idle).
  const sockets = new Set<Socket>();
  const ceiling = new ConnectionCeiling(options.maxConnections ?? Infinity, logger);
  // The MQTT listener's connections count against the same ceiling and per-address caps.
  const admit = (socket: Socket): boolean => {
    if (!ceiling.admit(sockets.size)) return false;
    if (!guard.admit(socket)) return false;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    return true;
  };
  server.on('connection', (socket: Socket) => {
    if (!admit(socket)) socket.destroy();
  });
  const mqtt = options.mqtt
    ? createMqttGateway({
        session: {
          logger,
          authenticate: (socket, token, deviceId) => guard.deviceToken(socket, token, deviceId),
          attach: (deviceId, link) => control.attach(deviceId, link),
          accepting: () => !draining,
          noisy: guard.noisy,
          audit: (refusal) =>
            audit.write({
              time: new Date().toISOString(),
              policy: undefined,
              device: refusal.device ?? '',
              stream: '',
              outcome: refusal.outcome,
              reason: `mqtt connect refused: ${refusal.reason}`,
              bytesToDevice: 0,
              bytesFromDevice: 0,
              durationMs: 0,
              remote: refusal.remote,
            }),
        },
        tls: options.tls,
        admit,
        timeoutMs: headersTimeoutMs,
        logger,
      })
    : undefined;

  server.on('clientError', (error, socket) => {
    logger.debug('bad client request', { error: error.message });
    if (socket.writable) {
      closeSoon(socket);
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    } else socket.destroy();
  });
  // With a listener here Node leaves the socket to us: a failed or timed-out handshake
  // (slow or half-open client) must be destroyed, or it stays open.
  server.on('tlsClientError', (error: Error, socket: Duplex) => {
    logger.debug('TLS handshake failed', { error: error.message });
    socket.destroy();
  });

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
  await listen(
    listener,
    options.host,
    options.port,
    'Another process uses that port; pick another with --listen.',
  );
  listener.on('error', (error) => logger.error('server error', { error: error.message }));
  const port = (listener.address() as AddressInfo).port;
  let mqttPort: number | undefined;
  const mqttListen = options.mqtt?.listen;
  if (mqtt && mqttListen) {
    try {
      mqttPort = await mqtt.listen(mqttListen.host, mqttListen.port);
    } catch (error) {
      const errno = error instanceof Error && (error.cause as NodeJS.ErrnoException | undefined);
      if (mqttListen.optional && errno && ['EADDRINUSE', 'EACCES'].includes(errno.code ?? '')) {
        // A second hub on the machine (or anything else on 8883) must not stop this one.
        logger.warn(
          `mqtt over TLS not started: ${formatHostPort(mqttListen.host, mqttListen.port)} ${errno.code === 'EADDRINUSE' ? 'is in use' : 'is not allowed'}; devices on Azure's SDKs can still use MQTT over WebSockets (/$iothub/websocket). Pick a port with --mqtt-listen, or --no-mqtt`,
        );
      } else {
        heartbeat.stop();
        listener.close();
        server.close();
        throw error;
      }
    }
  }
  const publicUrl = options.publicUrl ?? derivePublicUrl(options.host, port, options.tls !== null);
  const { host: publicHost, port: publicPort } = hostAndPort(publicUrl);
  Object.assign(ctx, {
    publicUrl,
    // Where this process itself is reached: streaming URLs name it (in a cluster, the node).
    nodeUrl: cluster
      ? (options.nodeUrl ?? derivePublicUrl(options.host, port, options.tls !== null))
      : publicUrl,
    address: {
      host: publicHost,
      port: publicPort,
      tls: publicUrl.protocol === 'https:',
      // Pin only what this process serves itself; behind a TLS-terminating proxy the proxy's cert counts.
      fingerprint: options.tls?.selfSigned ? options.tls.fingerprint : undefined,
    } satisfies HubAddress,
  });

  if (cluster) {
    const offerCtx = {
      control,
      streams,
      streamBaseUrl: ctx.nodeUrl,
      limits,
      logger,
      draining: () => draining,
    };
    try {
      await cluster.attach({
        nodeUrl: ctx.nodeUrl,
        trust: {
          tls: options.tls !== null,
          fingerprint: options.tls?.selfSigned ? options.tls.fingerprint : undefined,
        },
        control,
        offer: (request, signal) => offerStream(offerCtx, request, signal),
      });
    } catch (error) {
      heartbeat.stop();
      listener.close();
      server.close();
      throw error;
    }
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      heartbeat.stop();
      let pending = cluster ? 2 : 1;
      const done = (): void => void (--pending === 0 && resolve());
      // Give up the lease and registrations first, so other nodes stop routing here.
      cluster?.close().then(done, done);
      if (listener !== server) listener.close();
      server.close(done);
      control.close();
      mqtt?.close();
      streams.close();
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    }));
  const drain = async (timeoutMs: number): Promise<void> => {
    draining = true;
    control.goAway('hub shutting down');
    if (streams.size > 0) {
      logger.info('draining: waiting for active streams to finish', {
        streams: streams.size,
        timeoutMs,
      });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done(): void {
          clearTimeout(timer);
          streams.off('stream-end', check);
          resolve();
        }
        function check(): void {
          if (streams.size === 0) done();
        }
        streams.on('stream-end', check);
      });
      if (streams.size > 0)
        logger.warn('drain timeout: closing the remaining streams', { streams: streams.size });
    }
    await close();
  };
  return {
    port,
    mqttPort,
    publicUrl,
    address: ctx.address,
    control,
    streams,
    guard,
    metrics,
    drain,
    close,
  };
}
