import type { IncomingMessage, ServerResponse } from 'node:http';
import { deviceIdProblem } from '../../protocol/identifiers.js';
import { twinEtag, twinJson } from '../../protocol/iothub-device.js';
import { sendError, sendJson } from '../base/http-util.js';
import { connectedSet, notRegistered, type RegistryApiContext } from './registry-api.js';

/**
 * GET /twins/{id}: IoT Hub's device twin, minimal (registry read right). dstream keeps no
 * tags or properties, so twins cannot be changed: PATCH and PUT answer 405.
 */
export async function handleTwinApi(
  ctx: RegistryApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  deviceId: string,
): Promise<void> {
  const method = req.method ?? 'GET';
  if (method !== 'GET')
    return sendError(
      res,
      405,
      'MethodNotAllowed',
      `${method} is not supported on /twins/{id}: dstream's twins have no tags or properties to change`,
    );
  const caller = ctx.guard.serviceOrRefuse(req, res, 'RegistryRead', 'twin');
  if (!caller) return;
  const problem = deviceIdProblem(deviceId);
  if (problem) return sendError(res, 400, 'ArgumentInvalid', problem);
  const device = ctx.registry.getDevice(deviceId);
  if (!device) return notRegistered(res, deviceId);
  const connected = (await connectedSet(ctx, [deviceId])).has(deviceId);
  res.setHeader('etag', `"${twinEtag}"`);
  return sendJson(res, 200, twinJson(device, connected));
}
