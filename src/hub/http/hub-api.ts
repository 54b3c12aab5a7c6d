import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../log/logger.js';
import type { Guard } from '../admission/guard.js';
import { sendError, sendJson } from '../base/http-util.js';
import type { DeviceLinks } from '../devices/device-links.js';
import type { HubActivity } from '../observe/activity.js';
import { operatorActions, streamOutcomes } from '../store/audit-log.js';
import type { Registry } from '../store/registry.js';
import type { StreamEndpoint } from '../streams/stream-endpoint.js';
import type { NodeView } from '../cluster/cluster-view.js';
import type { HubCluster } from '../cluster/hub-cluster.js';
import { connectedSet } from './registry-api.js';
import { otherNodes } from './stream-api.js';

/** What a hub says about itself on `GET /hub`, fixed once it listens. */
export interface HubIdentity {
  readonly version: string;
  readonly startedAt: number;
  /** The cluster node's id, or undefined for a single hub. */
  readonly node: string | undefined;
  /** Where its listeners are: the API, the console, MQTT over TLS. */
  readonly listeners: Readonly<Record<string, string>>;
  /** Whether it offers resumable streams, and their window. */
  readonly resumeWindowMs: number | undefined;
}

export interface HubApiContext {
  readonly registry: Registry;
  readonly guard: Guard;
  readonly devices: DeviceLinks;
  readonly streams: StreamEndpoint;
  readonly activity: HubActivity;
  readonly identity: () => HubIdentity;
  readonly logger: Logger;
  /** In a cluster: which of these devices are connected to any node. */
  readonly connectedAmong?: ((deviceIds: readonly string[]) => Promise<Set<string>>) | undefined;
  /** In a cluster: the other nodes' devices, streams and traffic are shown too. */
  readonly cluster: HubCluster | undefined;
}

/** The cluster's nodes for GET /hub: this one, those that report, and those that do not. */
async function clusterNodes(
  ctx: HubApiContext,
  views: readonly NodeView[],
): Promise<Record<string, unknown>[] | null> {
  const { cluster } = ctx;
  if (!cluster) return null;
  const here = {
    id: cluster.nodeId,
    state: 'this node',
    url: ctx.identity().listeners.node ?? null,
    devicesOnline: ctx.devices.size,
    openStreams: ctx.streams.size,
  };
  let live: string[] = [];
  try {
    live = await cluster.liveNodes();
  } catch {
    return [{ ...here, state: 'this node (the cluster store is unreachable)' }];
  }
  const byId = new Map(views.map((v) => [v.node, v]));
  return [
    here,
    ...live
      .filter((id) => id !== cluster.nodeId)
      .sort()
      .map((id) => {
        const view = byId.get(id);
        return view
          ? {
              id,
              state: 'up',
              url: view.url,
              devicesOnline: view.devices.length,
              openStreams: view.streams.length,
            }
          : { id, state: 'not reporting', url: null, devicesOnline: null, openStreams: null };
      }),
  ];
}

/**
 * GET /hub (RegistryRead): version, uptime, listeners, the caller's own policy and rights (a
 * page shows write actions only to a policy that has RegistryWrite), counts, the audit outcomes
 * GET /audit can filter on, and the samples
 * of the last hour (open streams, new streams a second, bytes a second).
 */
export async function handleHubInfo(
  ctx: HubApiContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if (req.method !== 'GET')
    return sendError(res, 405, 'MethodNotAllowed', `${req.method} is not supported on /hub`);
  const caller = ctx.guard.serviceOrRefuse(req, res, 'RegistryRead', 'hub');
  if (!caller) return;
  const identity = ctx.identity();
  const views = await otherNodes(ctx.cluster, ctx.logger);
  const nodes = await clusterNodes(ctx, views);
  const now = Date.now();
  sendJson(res, 200, {
    version: identity.version,
    node: identity.node ?? null,
    startedAt: new Date(identity.startedAt).toISOString(),
    uptimeSeconds: Math.floor((now - identity.startedAt) / 1000),
    listeners: identity.listeners,
    resumeWindowSeconds:
      identity.resumeWindowMs === undefined ? null : identity.resumeWindowMs / 1000,
    caller: { policy: caller.name, rights: caller.rights },
    cluster: nodes && { nodes },
    devices: { registered: ctx.registry.listDevices().length, online: ctx.devices.size },
    streams: { open: ctx.streams.size, ...ctx.streams.bytesRelayed() },
    auditOutcomes: [...streamOutcomes, ...operatorActions],
    sampleSeconds: ctx.activity.everyMs / 1000,
    history: ctx.activity.history(),
  });
}

/**
 * GET /hub/devices (RegistryRead): every registered device with what the hub knows of it now:
 * enabled or disabled, online or not, how it is connected and since when, its open streams and
 * the bytes it moved in the last hour. The console's Devices page.
 */
export async function handleDeviceActivity(
  ctx: HubApiContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if (req.method !== 'GET')
    return sendError(res, 405, 'MethodNotAllowed', `${req.method} is not supported here`);
  if (!ctx.guard.serviceOrRefuse(req, res, 'RegistryRead', 'hub')) return;
  const devices = ctx.registry.listDevices();
  const node = ctx.cluster?.nodeId ?? null;
  const here = new Map(ctx.devices.describe().map((d) => [d.deviceId, { ...d, node }]));
  const bytes = ctx.activity.bytesLastHour();
  const open = new Map<string, number>();
  for (const stream of ctx.streams.list())
    open.set(stream.deviceId, (open.get(stream.deviceId) ?? 0) + 1);
  // The other nodes' links, streams and bytes (a device's link is on one node; its streams
  // and bytes may be on several).
  for (const view of await otherNodes(ctx.cluster, ctx.logger)) {
    for (const d of view.devices)
      if (!here.has(d.deviceId)) here.set(d.deviceId, { ...d, node: view.node });
    for (const s of view.streams) open.set(s.deviceId, (open.get(s.deviceId) ?? 0) + 1);
    for (const [id, n] of view.bytesLastHour) bytes.set(id, (bytes.get(id) ?? 0) + n);
  }
  const anywhere = await connectedSet(
    { control: ctx.devices, connectedAmong: ctx.connectedAmong, logger: ctx.logger },
    devices.map((d) => d.deviceId),
  );
  for (const id of here.keys()) anywhere.add(id);
  sendJson(
    res,
    200,
    devices.map((device) => {
      const link = here.get(device.deviceId);
      return {
        deviceId: device.deviceId,
        status: device.status,
        online: device.status === 'enabled' && anywhere.has(device.deviceId),
        protocol: link?.protocol ?? null,
        node: link?.node ?? null,
        remote: link?.remote ?? null,
        connectedSince: link ? new Date(link.since).toISOString() : null,
        lastActivityTime: device.lastActivityTime,
        openStreams: open.get(device.deviceId) ?? 0,
        bytesLastHour: bytes.get(device.deviceId) ?? 0,
      };
    }),
  );
}
