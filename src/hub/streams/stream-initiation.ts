import type { IotHubErrorName } from '../../protocol/iothub-error.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../log/logger.js';
import { headers as h } from '../../protocol/constants.js';
import type { HubMetrics } from '../observe/metrics.js';
import type { Guard } from '../admission/guard.js';
import { auditEvent, type AuditLog, type StreamOutcome } from '../store/audit-log.js';
import type { DeviceLinks } from '../devices/device-links.js';
import { remoteOf, sendError, sendJson } from '../base/http-util.js';
import type { HubLimits } from './limits.js';
import type { Registry } from '../store/registry.js';
import type { StreamEndpoint } from './stream-endpoint.js';
import {
  drainingMessage,
  offerStream,
  offline,
  type StreamOffer,
  type StreamOfferRequest,
} from './stream-offer.js';

export interface StreamInitiationContext {
  readonly registry: Registry;
  readonly control: DeviceLinks;
  readonly streams: StreamEndpoint;
  /** Base for streaming URLs: the hub's public URL, or in a cluster this node's URL. */
  readonly streamBaseUrl: URL;
  readonly logger: Logger;
  readonly limits: HubLimits;
  readonly guard: Guard;
  readonly audit: AuditLog;
  readonly metrics?: HubMetrics;
  /** True once the hub is draining: no new streams. */
  readonly draining: () => boolean;
  /** In a cluster: finds the node that holds the device and offers the stream there. */
  readonly route?: RouteStream | undefined;
}

/** Offers a stream wherever the device is connected, waiting up to `connectTimeoutS` for it. */
export type RouteStream = (
  request: StreamOfferRequest,
  connectTimeoutS: number,
  signal: AbortSignal,
) => Promise<StreamOffer>;

/** Defaults when the service sends no timeout headers, and the most it may ask for. */
export const defaultConnectTimeoutS = 0;
export const defaultResponseTimeoutS = 30;
export const maxTimeoutS = 300;

function timeoutHeader(req: IncomingMessage, name: string, fallback: number): number | string {
  const raw = req.headers[name];
  if (raw === undefined) return fallback;
  // Seconds, whole or decimal: Azure's C# SDK sends a TimeSpan's TotalSeconds ("2.5").
  if (typeof raw !== 'string' || !/^\d{1,4}(?:\.\d{1,7})?$/.test(raw) || Number(raw) > maxTimeoutS)
    return `${name} must be a number of seconds from 0 to ${maxTimeoutS}`;
  return Number(raw);
}

/**
 * POST /twins/{deviceId}/streams/{streamName} (or /twins/{deviceId}/modules/{moduleId}/streams/
 * {streamName}): IoT Hub's stream initiation. The request is
 * held until the device answers; the reply carries iothub-streaming-is-accepted and, when
 * accepted, the streaming URL and the service side's single-use token.
 */
export async function handleStreamInitiation(
  ctx: StreamInitiationContext,
  req: IncomingMessage,
  res: ServerResponse,
  deviceId: string,
  streamName: string,
  /** Set for IoT Hub's module form of the request; logged, the device's agent answers. */
  moduleId?: string,
): Promise<void> {
  const started = Date.now();
  const remote = remoteOf(req);
  const log = ctx.logger.child({
    device: deviceId,
    ...(moduleId !== undefined && { module: moduleId }),
    stream: streamName,
    remote,
  });
  // Known once authenticated; refusals before that are audited without it.
  const caller: { policy?: string } = {};
  /** Answer with an error and write the attempt to the audit log. */
  const refuse = (
    outcome: StreamOutcome,
    status: number,
    errorCode: IotHubErrorName,
    message: string,
    retryAfter?: number,
  ): void => {
    ctx.audit.write(
      auditEvent({
        policy: caller.policy,
        device: deviceId,
        stream: streamName,
        outcome,
        reason: message,
        remote,
        startedAt: started,
      }),
    );
    if (retryAfter !== undefined) res.setHeader('retry-after', String(retryAfter));
    sendError(res, status, errorCode, message);
  };

  const auth = ctx.guard.service(req, 'ServiceConnect');
  if (!auth.ok) {
    log.warn('stream request refused', { status: auth.status, reason: auth.message });
    const outcome =
      auth.status === 429 ? 'throttled' : auth.status === 403 ? 'forbidden' : 'unauthorized';
    return refuse(
      outcome,
      auth.status,
      auth.errorCode,
      auth.message,
      auth.status === 429 ? auth.retryAfterSeconds : undefined,
    );
  }
  caller.policy = auth.value.name;
  const policy = caller.policy;
  if (ctx.draining()) return refuse('unavailable', 503, 'ServiceUnavailable', drainingMessage, 5);
  const connectTimeout = timeoutHeader(req, h.connectTimeout, defaultConnectTimeoutS);
  const responseTimeout = timeoutHeader(req, h.responseTimeout, defaultResponseTimeoutS);
  if (typeof connectTimeout === 'string')
    return refuse('invalid', 400, 'ArgumentInvalid', connectTimeout);
  if (typeof responseTimeout === 'string')
    return refuse('invalid', 400, 'ArgumentInvalid', responseTimeout);

  const device = ctx.registry.getDevice(deviceId);
  if (!device)
    return refuse(
      'not-found',
      404,
      'DeviceNotFound',
      `device '${deviceId}' is not registered on this hub`,
    );
  if (device.status !== 'enabled')
    return refuse('disabled', 403, 'DeviceDisabled', `device '${deviceId}' is disabled`);

  // The service may hang up while we wait; stop waiting and drop the stream then.
  const gone = new AbortController();
  res.on('close', () => gone.abort());
  const request = {
    deviceId,
    streamName,
    origin: { policy, remote },
    responseTimeoutS: responseTimeout,
  };
  let offer: StreamOffer;
  if (ctx.route) {
    offer = await ctx.route(request, connectTimeout, gone.signal);
  } else {
    const online = await ctx.control.waitOnline(deviceId, connectTimeout * 1000, gone.signal);
    offer = online ? await offerStream(ctx, request, gone.signal) : offline(deviceId);
  }
  if (gone.signal.aborted) return;
  switch (offer.kind) {
    case 'refused':
      return refuse(offer.outcome, offer.status, offer.errorCode, offer.message, offer.retryAfter);
    case 'rejected':
      ctx.audit.write(
        auditEvent({
          policy,
          device: deviceId,
          stream: streamName,
          outcome: 'rejected',
          reason: offer.reason,
          remote,
          startedAt: started,
        }),
      );
      return sendJson(
        res,
        200,
        { isAccepted: false, reason: offer.reason },
        { [h.isAccepted]: 'False' },
      );
    case 'accepted':
      // The audit line for an accepted stream is written when it ends, with its byte counts.
      ctx.metrics?.streamAccepted(Date.now() - started);
      return sendJson(
        res,
        200,
        { isAccepted: true },
        { [h.isAccepted]: 'True', [h.url]: offer.url, [h.authToken]: offer.serviceToken },
      );
  }
}
