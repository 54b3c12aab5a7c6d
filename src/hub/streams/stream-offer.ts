import { webSocketScheme } from '../base/http-util.js';
import type { IotHubErrorName } from '../../protocol/iothub-error.js';
import type { Logger } from '../../log/logger.js';
import { resumableStreamProtocol } from '../../protocol/constants.js';
import type { StreamOutcome } from '../store/audit-log.js';
import type { DeviceLinks } from '../devices/device-links.js';
import type { HubLimits } from './limits.js';
import type { StreamEndpoint, StreamOrigin } from './stream-endpoint.js';
import { randomText } from './random-text.js';
import type { AbortLike } from '../../runtime/hangup.js';

/** A stream request, as the node that holds the device's control connection gets it. */
export interface StreamOfferRequest {
  readonly deviceId: string;
  readonly streamName: string;
  readonly origin: StreamOrigin;
  /** How long the device may take to answer. */
  readonly responseTimeoutS: number;
  /**
   * The stream protocols the service side offered, when it is already here (an initiation on a
   * carrier connection): if it will be resumable, a stream offer carries the device's first
   * ticket, so that the device's bytes need not wait for the pairing to learn it.
   */
  readonly serviceProtocols?: readonly string[] | undefined;
}

/** What became of an offer: the streaming URL and service token, or why not. */
export type StreamOffer =
  | { readonly kind: 'accepted'; readonly url: string; readonly serviceToken: string }
  | { readonly kind: 'rejected'; readonly reason: string }
  | {
      readonly kind: 'refused';
      readonly outcome: StreamOutcome;
      readonly status: number;
      readonly errorCode: IotHubErrorName;
      readonly message: string;
      readonly retryAfter?: number | undefined;
    };

export interface StreamOfferContext {
  readonly control: DeviceLinks;
  readonly streams: StreamEndpoint;
  /** Base of the streaming URLs: this node's own URL, where both sides will connect. */
  readonly streamBaseUrl: URL;
  readonly limits: HubLimits;
  readonly logger: Logger;
  readonly draining: () => boolean;
}

export const drainingMessage = 'the hub is shutting down and takes no new streams';

/** A refusal, with IoT Hub's status and error code. */
export function refused(
  outcome: StreamOutcome,
  status: number,
  errorCode: IotHubErrorName,
  message: string,
  retryAfter?: number,
): StreamOffer {
  return { kind: 'refused', outcome, status, errorCode, message, retryAfter };
}

export const offline = (deviceId: string, why = 'is not connected to the hub'): StreamOffer =>
  refused('offline', 404, 'DeviceNotOnline', `device '${deviceId}' ${why}`);

function limitProblem(ctx: StreamOfferContext, deviceId: string): string | undefined {
  const { limits } = ctx;
  if (ctx.streams.size >= limits.maxStreams)
    return `the hub has ${limits.maxStreams} streams open, its limit`;
  if (ctx.streams.countFor(deviceId) >= limits.maxStreamsPerDevice)
    return `device '${deviceId}' has ${limits.maxStreamsPerDevice} streams open, its limit`;
  if (ctx.control.pendingFor(deviceId) >= limits.maxPendingPerDevice)
    return `device '${deviceId}' has ${limits.maxPendingPerDevice} stream requests waiting for an answer, its limit`;
  return undefined;
}

/**
 * Offer a stream to a device connected to this node and wait for its answer. The stream is
 * created here, so the streaming URL names this node and both sides' bytes meet in this
 * process. `signal` aborts when the caller gives up: the stream is then dropped and a late
 * answer ignored.
 */
export async function offerStream(
  ctx: StreamOfferContext,
  request: StreamOfferRequest,
  signal: AbortLike,
): Promise<StreamOffer> {
  const { deviceId, streamName } = request;
  const log = ctx.logger.child({ device: deviceId, stream: streamName });
  if (ctx.draining()) return refused('unavailable', 503, 'ServiceUnavailable', drainingMessage, 5);
  if (!ctx.control.isOnline(deviceId)) return offline(deviceId);
  const limited = limitProblem(ctx, deviceId);
  if (limited) {
    log.warn('stream request refused: limit reached', { reason: limited });
    return refused('throttled', 429, 'ThrottlingException', limited, 1);
  }
  const stream = ctx.streams.create(deviceId, streamName, request.origin);
  const requestId = randomText(12);
  const base = ctx.streamBaseUrl;
  const wsScheme = webSocketScheme(base);
  // The port is written out even when it is the scheme's default (URL.host drops it): some
  // of Azure's clients (the C SDK) read host and port from the URL separately.
  const port = base.port || (wsScheme === 'wss:' ? '443' : '80');
  const url = `${wsScheme}//${base.hostname}:${port}/bridges/${stream.id}`;
  const abandon = (): void => {
    ctx.control.cancel(deviceId, requestId);
    ctx.streams.cancel(stream.id);
  };
  signal.addEventListener('abort', abandon);
  const serviceResumable =
    request.serviceProtocols !== undefined &&
    ctx.streams.chooseProtocol(new Set(request.serviceProtocols)) === resumableStreamProtocol;
  const answer = await ctx.control.request(
    deviceId,
    { type: 'stream-request', requestId, streamName, url, authorizationToken: stream.deviceToken },
    request.responseTimeoutS * 1000,
    serviceResumable ? ctx.streams.firstTicket(stream.id, 'device') : undefined,
  );
  signal.removeEventListener('abort', abandon);
  if (signal.aborted) return offline(deviceId, 'request abandoned');

  switch (answer.kind) {
    case 'timeout':
      ctx.streams.cancel(stream.id);
      log.warn('stream request timed out waiting for the device');
      return refused(
        'timeout',
        504,
        'GatewayTimeout',
        `device '${deviceId}' did not answer within ${request.responseTimeoutS} s`,
      );
    case 'disconnected':
      ctx.streams.cancel(stream.id);
      if (ctx.draining())
        return refused('unavailable', 503, 'ServiceUnavailable', drainingMessage, 5);
      return offline(deviceId, 'disconnected before answering');
    case 'answered': {
      const { accepted, reason } = answer.response;
      if (!accepted) {
        ctx.streams.cancel(stream.id);
        const why = reason ?? 'rejected by the device';
        log.info('stream rejected by the device', { reason: why });
        return { kind: 'rejected', reason: why };
      }
      log.debug('stream accepted', { id: stream.id });
      return { kind: 'accepted', url, serviceToken: stream.serviceToken };
    }
  }
}
