import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatDeviceConnectionString, type HubAddress } from '../../auth/connection-string.js';
import type { Logger } from '../../log/logger.js';
import { deviceIdProblem } from '../../protocol/identifiers.js';
import type { Guard } from '../admission/guard.js';
import type { DeviceLinks } from '../devices/device-links.js';
import {
  deviceIdentityJson,
  etagOf,
  ifMatchAdmits,
  parseDeviceIdentity,
  parseIfMatch,
} from '../../protocol/iothub-device.js';
import { readBody, readBodyField, remoteOf, sendError, sendJson } from '../base/http-util.js';
import { auditEvent, type AuditLog, type OperatorAction } from '../store/audit-log.js';
import {
  AlreadyExistsError,
  PreconditionFailedError,
  type DeviceRecord,
  type Registry,
  type Right,
} from '../store/registry.js';
import type { StreamEndpoint } from '../streams/stream-endpoint.js';

export interface RegistryApiContext {
  readonly registry: Registry;
  readonly control: DeviceLinks;
  readonly streams: StreamEndpoint;
  /** How devices reach this hub; goes into the connection strings handed out. */
  readonly hubAddress: HubAddress;
  readonly logger: Logger;
  readonly guard: Guard;
  /** Each change (added, enabled, disabled, re-keyed, removed) is one line here. */
  readonly audit: AuditLog;
  /** In a cluster: which of these devices are connected to any node. */
  readonly connectedAmong?: ((deviceIds: readonly string[]) => Promise<Set<string>>) | undefined;
}

/**
 * Which devices are connected: to this hub, or in a cluster to any node. If the cluster
 * cannot say (Redis away), this node's own connections are the best answer there is.
 */
export async function connectedSet(
  ctx: Pick<RegistryApiContext, 'control' | 'connectedAmong' | 'logger'>,
  deviceIds: readonly string[],
): Promise<Set<string>> {
  const local = new Set(deviceIds.filter((id) => ctx.control.isOnline(id)));
  if (!ctx.connectedAmong) return local;
  try {
    const anywhere = await ctx.connectedAmong(deviceIds);
    for (const id of local) anywhere.add(id);
    return anywhere;
  } catch (error) {
    ctx.logger.debug('cannot ask the cluster which devices are connected', {
      error: (error as Error).message,
    });
    return local;
  }
}

/**
 * The JSON shape of a device: IoT Hub's device identity (etag, generationId, keys when
 * `withSecrets`), plus dstream's connection strings beside the keys.
 */
export function deviceJson(
  ctx: RegistryApiContext,
  device: DeviceRecord,
  withSecrets: boolean,
  connected: boolean,
): Record<string, unknown> {
  return {
    ...deviceIdentityJson(device, connected, withSecrets),
    ...(withSecrets
      ? {
          connectionString: formatDeviceConnectionString(
            ctx.hubAddress,
            device.deviceId,
            device.primaryKey,
          ),
          secondaryConnectionString: formatDeviceConnectionString(
            ctx.hubAddress,
            device.deviceId,
            device.secondaryKey,
          ),
        }
      : {}),
  };
}

/** Answer with a device, its etag also in the ETag header (as IoT Hub does). */
function sendDevice(
  ctx: RegistryApiContext,
  res: ServerResponse,
  device: DeviceRecord,
  withSecrets: boolean,
  connected: boolean,
): void {
  res.setHeader('etag', `"${etagOf(device)}"`);
  sendJson(res, 200, deviceJson(ctx, device, withSecrets, connected));
}

/** 404 DeviceNotFound, as every registry and twin endpoint answers it. */
export const notRegistered = (res: ServerResponse, deviceId: string): void =>
  sendError(res, 404, 'DeviceNotFound', `device '${deviceId}' is not registered`);

const changedSinceRead = (res: ServerResponse, deviceId: string): void =>
  sendError(
    res,
    412,
    'PreconditionFailed',
    `device '${deviceId}' has another etag than If-Match names: it changed since it was read`,
  );

/** One audit line for a change an operator made (`policy` from `req`'s address). */
function audited(
  ctx: RegistryApiContext,
  req: IncomingMessage,
  policy: string,
  deviceId: string,
  outcome: OperatorAction,
  reason?: string,
): void {
  // Every line has a reason, in words: "device disabled by policy 'ops'".
  const what = `${outcome.replace(/-/g, ' ')} by policy '${policy}'`;
  ctx.audit.write(
    auditEvent({
      policy,
      device: deviceId,
      stream: '',
      outcome,
      reason: reason === undefined ? what : `${what}: ${reason}`,
      remote: remoteOf(req),
    }),
  );
}

/** Close what a change revokes: a disabled device's connection, one made with an old key. */
function revoke(ctx: RegistryApiContext, before: DeviceRecord, after: DeviceRecord): void {
  if (after.status === 'disabled' && before.status === 'enabled') {
    ctx.control.disconnect(after.deviceId, 'device disabled');
    ctx.streams.closeDevice(after.deviceId);
  } else if (after.primaryKey !== before.primaryKey || after.secondaryKey !== before.secondaryKey) {
    // A connection made with the old key must not outlive it: the agent reconnects.
    ctx.control.disconnect(after.deviceId, 'device keys changed');
  }
}

/**
 * PUT /devices/{id}: without If-Match, create (keys from the body kept, else generated; 409
 * if it exists); with If-Match, replace status and keys of an existing device (`*`, or its
 * current etag; else 412), as IoT Hub's Registry.create and Registry.update do.
 */
async function putDevice(
  ctx: RegistryApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  deviceId: string,
  policy: string,
): Promise<void> {
  const body = await readBody(req, res);
  if (!body) return;
  const parsed = parseDeviceIdentity(body.value, deviceId);
  if ('problem' in parsed) return sendError(res, 400, 'ArgumentInvalid', parsed.problem);
  const wanted = parsed.request;
  const ifMatch = parseIfMatch(req.headers['if-match']);
  if (ifMatch.kind === 'none') {
    try {
      const device = await ctx.registry.addDevice(deviceId, new Date(), wanted);
      audited(ctx, req, policy, deviceId, 'device-added');
      ctx.logger.info('device added', {
        device: deviceId,
        policy,
        keys: wanted.primaryKey || wanted.secondaryKey ? 'given' : 'generated',
      });
      return sendDevice(ctx, res, device, true, false);
    } catch (error) {
      if (error instanceof AlreadyExistsError)
        return sendError(res, 409, 'DeviceAlreadyExists', `device '${deviceId}' already exists`);
      throw error;
    }
  }
  const before = ctx.registry.getDevice(deviceId);
  if (!before) return notRegistered(res, deviceId);
  if (!ifMatchAdmits(ifMatch, etagOf(before))) return changedSinceRead(res, deviceId);
  let after: DeviceRecord | undefined;
  try {
    // The version read here is checked again in the store's own atomic step.
    after = await ctx.registry.updateDevice(deviceId, wanted, before.version);
  } catch (error) {
    if (error instanceof PreconditionFailedError) return changedSinceRead(res, deviceId);
    throw error;
  }
  if (!after) return notRegistered(res, deviceId);
  revoke(ctx, before, after);
  audited(
    ctx,
    req,
    policy,
    deviceId,
    after.status !== before.status ? `device-${after.status}` : 'device-updated',
    after.primaryKey !== before.primaryKey || after.secondaryKey !== before.secondaryKey
      ? 'keys replaced'
      : undefined,
  );
  ctx.logger.info('device updated', { device: deviceId, policy, status: after.status });
  const connected =
    after.status === 'enabled' && (await connectedSet(ctx, [deviceId])).has(deviceId);
  return sendDevice(ctx, res, after, true, connected);
}

/** DELETE /devices/{id}, unconditional or with If-Match (`*` or the current etag). */
async function deleteDevice(
  ctx: RegistryApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  deviceId: string,
  policy: string,
): Promise<void> {
  const ifMatch = parseIfMatch(req.headers['if-match']);
  const before = ctx.registry.getDevice(deviceId);
  if (!before) return notRegistered(res, deviceId);
  if (!ifMatchAdmits(ifMatch, etagOf(before))) return changedSinceRead(res, deviceId);
  try {
    const ifVersion = ifMatch.kind === 'etags' ? before.version : undefined;
    if (!(await ctx.registry.removeDevice(deviceId, ifVersion)))
      return notRegistered(res, deviceId);
  } catch (error) {
    if (error instanceof PreconditionFailedError) return changedSinceRead(res, deviceId);
    throw error;
  }
  ctx.control.disconnect(deviceId, 'device removed');
  ctx.streams.closeDevice(deviceId);
  audited(ctx, req, policy, deviceId, 'device-removed');
  ctx.logger.info('device removed', { device: deviceId, policy });
  res.writeHead(204).end();
}

/** POST /devices/{id}/regenerate-key {"key": "primary"|"secondary"}: a fresh key, old one dead. */
async function regenerateKey(
  ctx: RegistryApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  deviceId: string,
  policy: string,
): Promise<void> {
  const whichField = await readBodyField(req, res, 'key');
  if (!whichField) return;
  const which = whichField.value;
  if (which !== 'primary' && which !== 'secondary')
    return sendError(
      res,
      400,
      'ArgumentInvalid',
      'body must be {"key": "primary"} or {"key": "secondary"}',
    );
  const device = await ctx.registry.regenerateKey(deviceId, which);
  if (!device) return notRegistered(res, deviceId);
  // A connection made with the old key must not outlive it: the agent reconnects with its key.
  ctx.control.disconnect(deviceId, `${which} key regenerated`);
  audited(ctx, req, policy, deviceId, 'device-key-regenerated', `${which} key`);
  ctx.logger.info('device key regenerated', { device: deviceId, which, policy });
  return sendDevice(ctx, res, device, true, false);
}

/**
 * The registry REST API (service side), under /devices:
 * GET /devices, PUT|GET|PATCH|DELETE /devices/{id}. See docs/protocol.md.
 */
export async function handleRegistryApi(
  ctx: RegistryApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  deviceId: string | undefined,
  action?: string,
): Promise<void> {
  const method = req.method ?? 'GET';
  const right: Right = method === 'GET' ? 'RegistryRead' : 'RegistryWrite';
  const caller = ctx.guard.serviceOrRefuse(req, res, right, 'registry');
  if (!caller) return;
  if (deviceId === undefined) {
    if (method !== 'GET')
      return sendError(res, 405, 'MethodNotAllowed', `${method} is not supported on /devices`);
    const devices = ctx.registry.listDevices();
    const connected = await connectedSet(
      ctx,
      devices.map((d) => d.deviceId),
    );
    return sendJson(
      res,
      200,
      devices.map((d) => deviceJson(ctx, d, false, connected.has(d.deviceId))),
    );
  }
  const problem = deviceIdProblem(deviceId);
  if (problem) return sendError(res, 400, 'ArgumentInvalid', problem);
  if (action !== undefined) {
    if (action !== 'regenerate-key' || method !== 'POST')
      return sendError(
        res,
        404,
        'NotFound',
        `no such endpoint: ${method} /devices/{id}/${action.slice(0, 50)}`,
      );
    return regenerateKey(ctx, req, res, deviceId, caller.name);
  }

  switch (method) {
    case 'PUT':
      return putDevice(ctx, req, res, deviceId, caller.name);
    case 'GET': {
      const device = ctx.registry.getDevice(deviceId);
      if (!device) return notRegistered(res, deviceId);
      const connected = await connectedSet(ctx, [deviceId]);
      return sendDevice(ctx, res, device, true, connected.has(deviceId));
    }
    case 'PATCH': {
      const statusField = await readBodyField(req, res, 'status');
      if (!statusField) return;
      const status = statusField.value;
      if (status !== 'enabled' && status !== 'disabled')
        return sendError(
          res,
          400,
          'ArgumentInvalid',
          'body must be {"status": "enabled"} or {"status": "disabled"}',
        );
      const device = await ctx.registry.setDeviceStatus(deviceId, status);
      if (!device) return notRegistered(res, deviceId);
      if (status === 'disabled') {
        ctx.control.disconnect(deviceId, 'device disabled');
        ctx.streams.closeDevice(deviceId);
      }
      audited(ctx, req, caller.name, deviceId, `device-${status}`);
      ctx.logger.info(`device ${status}`, { device: deviceId, policy: caller.name });
      const connected = status === 'enabled' && (await connectedSet(ctx, [deviceId])).has(deviceId);
      return sendDevice(ctx, res, device, false, connected);
    }
    case 'DELETE':
      return deleteDevice(ctx, req, res, deviceId, caller.name);
    default:
      return sendError(res, 405, 'MethodNotAllowed', `${method} is not supported on /devices/{id}`);
  }
}
