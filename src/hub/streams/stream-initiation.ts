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
import type { AuthResult } from '../admission/authenticate.js';
import type { Throttled } from '../admission/guard.js';
import type { PolicyRecord } from '../store/registry.js';
import { Hangup, type AbortLike } from '../../runtime/hangup.js';
import {
  drainingMessage,
  offerStream,
  offline,
  refused,
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
  signal: AbortLike,
) => Promise<StreamOffer>;

/** Defaults when the service sends no timeout headers, and the most it may ask for. */
export const defaultConnectTimeoutS = 0;
export const defaultResponseTimeoutS = 30;
export const maxTimeoutS = 300;

function timeoutValue(
  raw: string | string[] | undefined,
  name: string,
  fallback: number,
): number | string {
  if (raw === undefined) return fallback;
  // Seconds, whole or decimal: Azure's C# SDK sends a TimeSpan's TotalSeconds ("2.5").
  if (typeof raw !== 'string' || !/^\d{1,4}(?:\.\d{1,7})?$/.test(raw) || Number(raw) > maxTimeoutS)
    return `${name} must be a number of seconds from 0 to ${maxTimeoutS}`;
  return Number(raw);
}

/**
 * A stream initiation however it came: IoT Hub's POST /twins/{deviceId}/streams/{streamName},
 * or a substream's `open` of that path on a service's carrier connection (mux-gateway.ts).
 */
export interface InitiationAsk {
  readonly deviceId: string;
  readonly streamName: string;
  /** Set for IoT Hub's module form of the request; logged, the device's agent answers. */
  readonly moduleId?: string | undefined;
  readonly remote: string | undefined;
  /** How it came: IoT Hub's POST, or a substream of a service's carrier connection. */
  readonly via: 'post' | 'carrier';
  /** Authenticate the caller's service token for ServiceConnect. */
  readonly authenticate: () => AuthResult<PolicyRecord> | Throttled;
  /** The timeout headers as they came (seconds), if they came. */
  readonly connectTimeout: string | string[] | undefined;
  readonly responseTimeout: string | string[] | undefined;
  /** Aborted when the caller hangs up while the device is asked: the stream is dropped. */
  readonly signal: AbortLike;
  /** The stream protocols the caller's half offers, when it came with the ask (a substream). */
  readonly protocols?: readonly string[] | undefined;
}

/** What the caller is answered: the stream granted, rejected by the device, or refused. */
export type InitiationAnswer = StreamOffer;

/**
 * IoT Hub's stream initiation: authenticate the caller, check the device and the limits, ask
 * the device (wherever it is connected), write the audit line of a stream that does not
 * start, and answer. Undefined when the caller hung up first (nothing is answered then).
 */
export async function initiateStream(
  ctx: StreamInitiationContext,
  ask: InitiationAsk,
): Promise<InitiationAnswer | undefined> {
  const started = Date.now();
  const { deviceId, streamName, moduleId, remote } = ask;
  ctx.metrics?.streamRequested(ask.via);
  const log = ctx.logger.child({
    device: deviceId,
    ...(moduleId !== undefined && { module: moduleId }),
    stream: streamName,
    remote,
  });
  // Known once authenticated; refusals before that are audited without it.
  const caller: { policy?: string } = {};
  const audited = (
    outcome: StreamOutcome,
    reason: string,
    answer: InitiationAnswer,
  ): InitiationAnswer => {
    ctx.audit.write(
      auditEvent({
        policy: caller.policy,
        device: deviceId,
        stream: streamName,
        outcome,
        reason,
        remote,
        startedAt: started,
      }),
    );
    return answer;
  };
  /** Refuse with an error, written to the audit log. */
  const refuse = (
    outcome: StreamOutcome,
    status: number,
    errorCode: IotHubErrorName,
    message: string,
    retryAfter?: number,
  ): InitiationAnswer =>
    audited(outcome, message, refused(outcome, status, errorCode, message, retryAfter));

  const auth = ask.authenticate();
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
  const connectTimeout = timeoutValue(ask.connectTimeout, h.connectTimeout, defaultConnectTimeoutS);
  const responseTimeout = timeoutValue(
    ask.responseTimeout,
    h.responseTimeout,
    defaultResponseTimeoutS,
  );
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

  const request = {
    deviceId,
    streamName,
    origin: { policy, remote },
    responseTimeoutS: responseTimeout,
    serviceProtocols: ask.protocols,
  };
  let offer: StreamOffer;
  if (ctx.route) {
    offer = await ctx.route(request, connectTimeout, ask.signal);
  } else {
    const online = await ctx.control.waitOnline(deviceId, connectTimeout * 1000, ask.signal);
    offer = online ? await offerStream(ctx, request, ask.signal) : offline(deviceId);
  }
  if (ask.signal.aborted) return undefined;
  switch (offer.kind) {
    case 'refused':
      return audited(offer.outcome, offer.message, offer);
    case 'rejected':
      return audited('rejected', offer.reason, offer);
    case 'accepted':
      // The audit line for an accepted stream is written when it ends, with its byte counts.
      ctx.metrics?.streamAccepted(Date.now() - started);
      return offer;
  }
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
  // The service may hang up while we wait; stop waiting and drop the stream then.
  const gone = new Hangup();
  // Removed once answered: the response closes after every answer.
  const onClose = (): void => gone.hangUp();
  res.on('close', onClose);
  const answer = await initiateStream(ctx, {
    deviceId,
    streamName,
    moduleId,
    remote: remoteOf(req),
    via: 'post',
    authenticate: () => ctx.guard.service(req, 'ServiceConnect'),
    connectTimeout: req.headers[h.connectTimeout],
    responseTimeout: req.headers[h.responseTimeout],
    signal: gone,
  });
  res.off('close', onClose);
  if (!answer) return;
  switch (answer.kind) {
    case 'refused':
      if (answer.retryAfter !== undefined) res.setHeader('retry-after', String(answer.retryAfter));
      return sendError(res, answer.status, answer.errorCode, answer.message);
    case 'rejected':
      return sendJson(
        res,
        200,
        { isAccepted: false, reason: answer.reason },
        { [h.isAccepted]: 'False' },
      );
    case 'accepted':
      return sendJson(
        res,
        200,
        { isAccepted: true },
        { [h.isAccepted]: 'True', [h.url]: answer.url, [h.authToken]: answer.serviceToken },
      );
  }
}
