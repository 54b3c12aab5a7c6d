import type { ServiceConnectionString } from '../auth/connection-string.js';
import { DstreamError } from '../errors.js';
import { hubRequest, type HubConnectionPool, type HubTarget } from '../net/hub-client.js';
import { apiVersion, headers as h } from '../protocol/constants.js';
import { serviceToken } from './credentials.js';
import { errorFromResponse } from './hub-errors.js';
import type { WebSocket } from 'ws';
import type { StreamGrant, StreamRequest } from '../stream/carrier.js';
import { formatHostPort } from '../auth/connection-string.js';
import { WebSocketCarrier } from '../stream/websocket-carrier.js';
import { abortSignalOf } from '../runtime/hangup.js';

export interface StreamInitiationOptions {
  readonly deviceId: string;
  readonly streamName: string;
  readonly connectTimeoutSeconds?: number;
  readonly responseTimeoutSeconds?: number;
  readonly signal?: AbortSignal;
  /** Kept-alive connections for the initiation request (a long-running proxy has one). */
  readonly pool?: HubConnectionPool | undefined;
  /** Offer a resumable stream socket (dstream.stream.v2; stream/carry.ts). */
  readonly resume?: boolean | undefined;
}

/** What to do about a rejected stream, from the agent's reason (its words: agent.ts). */
function rejectionHint(streamName: string, reason: string): string | undefined {
  if (reason.includes('is not allowed on this device'))
    return /^\d+$/.test(streamName)
      ? `The agent on the device allows only the streams it was started with: add \`--port ${streamName}\` to its command line, or ask for one it allows.`
      : `The agent on the device allows only the streams it was started with: add \`--target ${streamName}=HOST:PORT\` to its command line, or ask for one it allows.`;
  if (/cannot connect to .*ECONNREFUSED/.test(reason))
    return 'Nothing listens at the target on the device: start the service there.';
  return undefined;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** IoT Hub's timeout headers for an initiation, the ones set. */
function timeoutHeaders(options: StreamInitiationOptions): Record<string, string> {
  return {
    ...(options.connectTimeoutSeconds !== undefined
      ? { [h.connectTimeout]: String(options.connectTimeoutSeconds) }
      : {}),
    ...(options.responseTimeoutSeconds !== undefined
      ? { [h.responseTimeout]: String(options.responseTimeoutSeconds) }
      : {}),
  };
}

/** The error for a stream the device rejected, from the answer's body (`reason`). */
function rejection(options: StreamInitiationOptions, body: string): DstreamError {
  let reason = 'rejected by the device';
  try {
    const parsed = JSON.parse(body) as { reason?: unknown };
    if (typeof parsed.reason === 'string') reason = parsed.reason;
  } catch {
    // An Azure-style empty body: keep the generic reason.
  }
  return new DstreamError(
    'ERR_STREAM_REJECTED',
    `device '${options.deviceId}' rejected stream '${options.streamName}': ${reason}`,
    { hint: rejectionHint(options.streamName, reason) },
  );
}

/**
 * Ask the hub for a stream to a device (IoT Hub's POST /twins/{id}/streams/{name}): when the
 * device accepts, the grant that opens the service side's stream socket. Rejections and hub
 * errors are DstreamErrors with the reason.
 */
export async function requestStream(
  credential: ServiceConnectionString,
  target: HubTarget,
  options: StreamInitiationOptions,
): Promise<StreamGrant> {
  const path = `/twins/${encodeURIComponent(options.deviceId)}/streams/${encodeURIComponent(options.streamName)}?api-version=${apiVersion}`;
  const res = await hubRequest(
    target,
    {
      method: 'POST',
      path,
      headers: { authorization: serviceToken(credential), ...timeoutHeaders(options) },
      signal: options.signal,
      timeoutMs:
        ((options.connectTimeoutSeconds ?? 0) + (options.responseTimeoutSeconds ?? 30) + 15) * 1000,
    },
    options.pool,
  );
  if (res.status !== 200) throw errorFromResponse(res);
  if (header(res.headers[h.isAccepted])?.toLowerCase() !== 'true')
    throw rejection(options, res.body);
  const url = header(res.headers[h.url]);
  const token = header(res.headers[h.authToken]);
  if (!url || !token)
    throw new DstreamError(
      'ERR_PROTOCOL',
      'the hub accepted the stream but sent no streaming URL or token',
    );
  return { url, token };
}

/**
 * The stream to ask the hub for, for the service side's stream ends: a carrier that can asks
 * and opens in one step on its carrier connection, any other with requestStream (the POST).
 */
export function streamRequest(
  credential: ServiceConnectionString,
  target: HubTarget,
  options: Omit<StreamInitiationOptions, 'signal'>,
): StreamRequest {
  const scheme = target.tls ? 'wss' : 'ws';
  return {
    hub: new URL(`${scheme}://${formatHostPort(target.host, target.port)}`).origin,
    deviceId: options.deviceId,
    streamName: options.streamName,
    headers: timeoutHeaders(options),
    grant: (signal) =>
      requestStream(credential, target, { ...options, signal: abortSignalOf(signal) }),
    refusal: (status, body) =>
      status === 200 ? rejection(options, body) : errorFromResponse({ status, body, headers: {} }),
  };
}

/**
 * Ask the hub for a stream to a device and open the service side's stream socket over the
 * WebSocket carrier (one-shot callers: tests, `dstream connect`; the proxy and SOCKS keep a
 * carrier of their own).
 */
export async function openServiceStream(
  credential: ServiceConnectionString,
  target: HubTarget,
  options: StreamInitiationOptions,
): Promise<WebSocket> {
  const grant = await requestStream(credential, target, options);
  return new WebSocketCarrier({ trust: target, pool: options.pool }).open(grant, {
    resume: options.resume === true,
  });
}
