import { isValidStreamName } from './identifiers.js';

/** Hub -> agent: a service wants a stream. */
export interface StreamRequestMessage {
  readonly type: 'stream-request';
  readonly requestId: string;
  readonly streamName: string;
  /** Where the device side connects (wss://.../bridges/<id>). */
  readonly url: string;
  /** Single-use bearer token for the device side. */
  readonly authorizationToken: string;
}

/** Agent -> hub: accept or reject a request. */
export interface StreamResponseMessage {
  readonly type: 'stream-response';
  readonly requestId: string;
  readonly accepted: boolean;
  readonly reason?: string;
}

export type HubToAgentMessage = StreamRequestMessage;
export type AgentToHubMessage = StreamResponseMessage;

/** The largest control message either side accepts, in bytes. */
export const maxControlMessageBytes = 16 * 1024;
/** The longest rejection reason carried. */
export const maxReasonLength = 256;

const requestIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

function parseObject(text: string): Record<string, unknown> | undefined {
  if (text.length > maxControlMessageBytes) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/** Parse what the agent sent; undefined means a protocol violation. */
export function parseAgentMessage(text: string): AgentToHubMessage | undefined {
  const o = parseObject(text);
  if (!o || o.type !== 'stream-response') return undefined;
  const { requestId, accepted, reason } = o;
  if (typeof requestId !== 'string' || !requestIdPattern.test(requestId)) return undefined;
  if (typeof accepted !== 'boolean') return undefined;
  if (reason !== undefined && typeof reason !== 'string') return undefined;
  const cleaned = reason === undefined ? undefined : sanitizeReason(reason);
  return cleaned === undefined
    ? { type: 'stream-response', requestId, accepted }
    : { type: 'stream-response', requestId, accepted, reason: cleaned };
}

/** Parse what the hub sent; undefined means a protocol violation. */
export function parseHubMessage(text: string): HubToAgentMessage | undefined {
  const o = parseObject(text);
  if (!o || o.type !== 'stream-request') return undefined;
  const { requestId, streamName, url, authorizationToken } = o;
  if (typeof requestId !== 'string' || !requestIdPattern.test(requestId)) return undefined;
  if (typeof streamName !== 'string' || !isValidStreamName(streamName)) return undefined;
  if (typeof url !== 'string' || !/^wss?:\/\//.test(url)) return undefined;
  if (typeof authorizationToken !== 'string' || authorizationToken.length > 512) return undefined;
  return { type: 'stream-request', requestId, streamName, url, authorizationToken };
}

/** Keep reasons printable and short: they end up in HTTP bodies and log lines. */
export function sanitizeReason(reason: string): string {
  // eslint-disable-next-line no-control-regex
  return reason.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, maxReasonLength);
}
