import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HubAddress } from '../../auth/connection-string.js';
import type { Logger } from '../../log/logger.js';
import { deviceIdProblem, moduleIdProblem, streamNameProblem } from '../../protocol/identifiers.js';
import type { Guard } from '../admission/guard.js';
import { refuseUpgrade, sendError } from '../base/http-util.js';
import { upgradePassable } from '../cluster/forward.js';
import type { HubCluster } from '../cluster/hub-cluster.js';
import type { ControlWebSocketGateway } from '../devices/control-websocket.js';
import type { DeviceLinks } from '../devices/device-links.js';
import type { MqttGateway } from '../devices/mqtt-gateway.js';
import type { HubActivity } from '../observe/activity.js';
import type { HubMetrics } from '../observe/metrics.js';
import type { AuditLog } from '../store/audit-log.js';
import type { AuditTrail } from '../store/audit-trail.js';
import type { AgentFileServer } from './agent-file.js';
import { handleAuditApi } from './audit-api.js';
import type { EventFeed } from './event-feed.js';
import { handleDeviceActivity, handleHubInfo, type HubIdentity } from './hub-api.js';
import { handleStreamApi } from './stream-api.js';
import type { Registry } from '../store/registry.js';
import type { HubLimits } from '../streams/limits.js';
import type { StreamEndpoint } from '../streams/stream-endpoint.js';
import type { MuxGateway } from '../streams/mux-gateway.js';
import { forwardedHeader } from '../streams/stream-hop.js';
import { muxOffersHeader } from '../../protocol/mux-frames.js';
import {
  handleStreamInitiation,
  type StreamInitiationContext,
} from '../streams/stream-initiation.js';
import { handleHealth, handleMetrics, handleReadiness, type MetricsAccess } from './health.js';
import { handlePolicyApi } from './policy-api.js';
import { handleRegistryApi, type RegistryApiContext } from './registry-api.js';
import { RouteTable, type RouteParams } from './route-table.js';
import { handleTwinApi } from './twin-api.js';

/** Where the hub is reached; known once it listens, before its first request. */
export interface HubAddresses {
  readonly publicUrl: URL;
  /** This process itself: streaming URLs name it (in a cluster, the node, not the balancer). */
  readonly nodeUrl: URL;
  /** Host, port and trust data for the connection strings this hub hands out. */
  readonly address: HubAddress;
}

/** The parts of a hub its routes serve from (built by server.ts). */
export interface HubParts {
  readonly registry: Registry;
  readonly control: DeviceLinks;
  readonly controlSockets: ControlWebSocketGateway;
  readonly streams: StreamEndpoint;
  /** Carrier connections of the multiplexed carrier (/mux). */
  readonly mux: MuxGateway;
  readonly guard: Guard;
  readonly metrics: HubMetrics;
  readonly metricsAccess: MetricsAccess;
  readonly audit: AuditLog;
  /** The newest audit records, for GET /audit. */
  readonly trail: AuditTrail;
  /** The last hour's samples and per-device bytes. */
  readonly activity: HubActivity;
  /** GET /events' clients. */
  readonly feed: EventFeed;
  readonly identity: () => HubIdentity;
  /** The single-file agent, served to devices at /agent/. */
  readonly agentFile: AgentFileServer;
  readonly limits: HubLimits;
  readonly logger: Logger;
  readonly cluster: HubCluster | undefined;
  readonly mqtt: MqttGateway | undefined;
  readonly draining: () => boolean;
  readonly addresses: () => HubAddresses;
}

/** What IoT Hub's stream initiation needs, by POST or on a carrier connection (mux-gateway.ts). */
export function initiationContext(parts: HubParts): StreamInitiationContext {
  return {
    registry: parts.registry,
    control: parts.control,
    streams: parts.streams,
    streamBaseUrl: parts.addresses().nodeUrl,
    logger: parts.logger,
    limits: parts.limits,
    draining: parts.draining,
    guard: parts.guard,
    audit: parts.audit,
    metrics: parts.metrics,
    route: parts.cluster?.route,
  };
}

/** A stream socket that brings a resume ticket (`Authorization: Resume ...`). */
const isResumption = (req: IncomingMessage): boolean =>
  req.headers.authorization?.startsWith('Resume ') === true;

export type RequestHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  params: RouteParams,
) => void | Promise<void>;

export type UpgradeHandler = (
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  params: RouteParams,
) => void;

/** An empty trailing segment (`/devices/`) names no item. */
const item = (value: string | undefined): string | undefined => (value === '' ? undefined : value);

/**
 * The hub's HTTP API: health, metrics, IoT Hub's registry, twins, policies and stream
 * initiation, and dstream's operator reads (open streams, audit, live events, the hub itself).
 */
export function requestRoutes(parts: HubParts): RouteTable<RequestHandler> {
  const registryContext = (): RegistryApiContext => ({
    registry: parts.registry,
    control: parts.control,
    streams: parts.streams,
    hubAddress: parts.addresses().address,
    logger: parts.logger,
    guard: parts.guard,
    audit: parts.audit,
    connectedAmong: parts.cluster?.connectedAmong,
  });
  const registryApi: RequestHandler = (req, res, p) =>
    handleRegistryApi(registryContext(), req, res, item(p.deviceId), p.part);
  const policyApi: RequestHandler = (req, res, p) =>
    handlePolicyApi(
      {
        registry: parts.registry,
        hubAddress: parts.addresses().address,
        logger: parts.logger,
        guard: parts.guard,
      },
      req,
      res,
      item(p.name),
    );
  // IoT Hub's stream initiation, to a device or (IoT Hub's module form) to one of its
  // modules: dstream has no module identities, so a module's stream goes to its device's
  // agent, which judges it by stream name as any other (docs/azure.md).
  const initiation: RequestHandler = (req, res, p) => {
    const deviceId = p.deviceId ?? '';
    const streamName = p.streamName ?? '';
    if (req.method !== 'POST')
      return sendError(res, 405, 'MethodNotAllowed', 'stream initiation is POST');
    const problem =
      deviceIdProblem(deviceId) ??
      (p.moduleId === undefined ? undefined : moduleIdProblem(p.moduleId)) ??
      streamNameProblem(streamName);
    if (problem) return sendError(res, 400, 'ArgumentInvalid', problem);
    return handleStreamInitiation(
      initiationContext(parts),
      req,
      res,
      deviceId,
      streamName,
      p.moduleId,
    );
  };

  const streamApi: RequestHandler = (req, res, p) => handleStreamApi(parts, req, res, item(p.id));
  const hubContext = () => ({
    registry: parts.registry,
    guard: parts.guard,
    devices: parts.control,
    streams: parts.streams,
    activity: parts.activity,
    identity: parts.identity,
    logger: parts.logger,
    connectedAmong: parts.cluster?.connectedAmong,
    cluster: parts.cluster,
  });

  const table = new RouteTable<RequestHandler>()
    .add('GET', '/healthz', handleHealth)
    .add('GET', '/readyz', (_req, res) =>
      handleReadiness(res, {
        draining: parts.draining(),
        clusterReady: parts.cluster?.ready() ?? true,
      }),
    );
  if (parts.metricsAccess !== 'off')
    table.add('GET', '/metrics', (req, res) =>
      handleMetrics(req, res, parts.metrics, parts.metricsAccess),
    );
  // The APIs answer other methods themselves (405 in IoT Hub's shape).
  return table
    .add('*', '/devices', registryApi)
    .add('*', '/devices/:deviceId', registryApi)
    .add('*', '/devices/:deviceId/:part', registryApi)
    .add('*', '/policies', policyApi)
    .add('*', '/policies/:name', policyApi)
    .add('*', '/twins/:deviceId', (req, res, p) =>
      handleTwinApi(registryContext(), req, res, p.deviceId ?? ''),
    )
    .add('*', '/twins/:deviceId/streams/:streamName', initiation)
    .add('*', '/twins/:deviceId/modules/:moduleId/streams/:streamName', initiation)
    .add('*', '/streams', streamApi)
    .add('*', '/streams/:id', streamApi)
    .add('*', '/audit', (req, res) => handleAuditApi(parts, req, res))
    .add('*', '/events', (req, res) => parts.feed.serve(req, res))
    .add('*', '/hub', (req, res) => handleHubInfo(hubContext(), req, res))
    .add('*', '/hub/devices', (req, res) => handleDeviceActivity(hubContext(), req, res))
    .add('*', '/agent/:name', (req, res, p) => parts.agentFile.serve(req, res, p.name ?? ''));
}

/** Answer a carrier connection whose credential failed (sampled log line, Retry-After on 429). */
function refuseCarrier(
  parts: HubParts,
  req: IncomingMessage,
  socket: Duplex,
  auth: Exclude<ReturnType<Guard['service']>, { ok: true }>,
  deviceId: string | undefined,
): void {
  const remote = req.socket.remoteAddress;
  parts.guard.noisy.write(
    'warn',
    `carrier refused ${auth.status}`,
    remote,
    'carrier connection refused',
    {
      ...(deviceId === undefined ? {} : { device: deviceId }),
      remote,
      reason: auth.message,
    },
  );
  refuseUpgrade(
    socket,
    auth.status,
    auth.errorCode,
    auth.message,
    auth.status === 429 ? { 'Retry-After': String(auth.retryAfterSeconds) } : {},
  );
}

/** The hub's WebSocket endpoints: device control connections, MQTT over WebSockets, stream sockets. */
export function upgradeRoutes(parts: HubParts): RouteTable<UpgradeHandler> {
  const { guard, cluster, streams, mqtt } = parts;
  const table = new RouteTable<UpgradeHandler>().add(
    '*',
    '/devices/:deviceId/control',
    (req, socket, head, p) => {
      const deviceId = p.deviceId ?? '';
      const problem = deviceIdProblem(deviceId);
      if (problem) return refuseUpgrade(socket, 400, 'ArgumentInvalid', problem);
      const auth = guard.device(req, deviceId);
      if (parts.draining())
        return refuseUpgrade(socket, 503, 'ServiceUnavailable', 'the hub is shutting down');
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
      parts.controlSockets.accept(req, socket, head, deviceId);
    },
  );
  if (mqtt)
    table.add('*', '/$iothub/websocket', (req, socket, head) => mqtt.upgrade(req, socket, head));
  // A service side's carrier connection: its substreams bring their own stream tokens; the
  // connection itself takes a service token with ServiceConnect.
  table.add('*', '/mux', (req, socket, head) => {
    if (parts.draining())
      return refuseUpgrade(socket, 503, 'ServiceUnavailable', 'the hub is shutting down');
    const auth = guard.service(req, 'ServiceConnect');
    if (!auth.ok) return refuseCarrier(parts, req, socket, auth, undefined);
    parts.mux.accept(req, socket, head, { side: 'service' });
  });
  // A device's carrier connection, beside its control connection: the device's token.
  table.add('*', '/devices/:deviceId/mux', (req, socket, head, p) => {
    const deviceId = p.deviceId ?? '';
    const problem = deviceIdProblem(deviceId);
    if (problem) return refuseUpgrade(socket, 400, 'ArgumentInvalid', problem);
    if (parts.draining())
      return refuseUpgrade(socket, 503, 'ServiceUnavailable', 'the hub is shutting down');
    const auth = guard.device(req, deviceId);
    if (!auth.ok) return refuseCarrier(parts, req, socket, auth, deviceId);
    parts.mux.accept(req, socket, head, {
      side: 'device',
      deviceId,
      takesOffers: req.headers[muxOffersHeader] === '1',
    });
  });
  return table.add('*', '/bridges/:streamId', (req, socket, head, p) => {
    const id = p.streamId ?? '';
    // One hop at most: a socket another node forwarded here is not sent on again.
    const forwarded = req.headers[forwardedHeader] !== undefined;
    if (cluster && isResumption(req)) {
      // A suspended stream's half: its halves meet on the node the cluster picks, which need
      // not be the one that set the stream up (it may be gone). The ticket is checked first.
      return streams.accept(
        req,
        socket,
        head,
        id,
        forwarded
          ? undefined
          : (claims) => cluster.meet(claims, upgradePassable(req, socket, head)),
      );
    }
    if (cluster && !streams.isLocal(id)) {
      if (forwarded)
        return refuseUpgrade(socket, 404, 'StreamNotFound', 'no such stream on this node');
      return cluster.forward(upgradePassable(req, socket, head), id);
    }
    streams.accept(req, socket, head, id);
  });
}
