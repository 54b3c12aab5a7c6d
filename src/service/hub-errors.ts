import { DstreamError, type ErrorCode } from '../errors.js';
import type { HubResponse } from '../net/hub-client.js';
import { errorCodeHeader, parseIotHubError } from '../protocol/iothub-error.js';

const byErrorCode: Readonly<Record<string, ErrorCode>> = {
  DeviceNotFound: 'ERR_DEVICE_NOT_FOUND',
  DeviceNotOnline: 'ERR_DEVICE_OFFLINE',
  DeviceDisabled: 'ERR_DEVICE_DISABLED',
  DeviceAlreadyExists: 'ERR_DEVICE_EXISTS',
  PolicyAlreadyExists: 'ERR_POLICY_EXISTS',
  PolicyNotFound: 'ERR_POLICY_NOT_FOUND',
  ThrottlingException: 'ERR_THROTTLED',
  ServiceUnavailable: 'ERR_HUB_UNAVAILABLE',
  GatewayTimeout: 'ERR_TIMEOUT',
  ArgumentInvalid: 'ERR_USAGE',
};

/** Hints by code; `<id>` becomes the device the message names. */
const hints: Partial<Record<ErrorCode, string>> = {
  ERR_UNAUTHORIZED:
    'Check the connection string: it may belong to another hub, or its key was changed.',
  ERR_DEVICE_NOT_FOUND:
    'List the registered devices with `dstream device list`; register it with `dstream device add <id>`.',
  ERR_DEVICE_OFFLINE: 'Is `dstream agent` running on the device, with network access to the hub?',
  ERR_DEVICE_DISABLED: 'Enable it with `dstream device enable <id>`.',
  ERR_DEVICE_EXISTS: '`dstream device show <id>` prints its connection string.',
};

function hintFor(code: ErrorCode, message: string): string | undefined {
  const hint = hints[code];
  const device = /device '([^']+)'/.exec(message)?.[1];
  return device === undefined ? hint?.replaceAll(' <id>', '') : hint?.replaceAll('<id>', device);
}

/** Turn a hub error response (IoT Hub's shape, see protocol/iothub-error.ts) into a DstreamError. */
export function errorFromResponse(res: HubResponse): DstreamError {
  const header = res.headers[errorCodeHeader];
  const parsed = parseIotHubError(res.body, typeof header === 'string' ? header : undefined);
  const errorCode = parsed.name ?? '';
  // Not an error body we know (a proxy in between?): keep the status line.
  const message = parsed.message ?? `the hub answered ${res.status}`;
  const code: ErrorCode =
    byErrorCode[errorCode] ??
    (res.status === 401
      ? 'ERR_UNAUTHORIZED'
      : res.status === 403
        ? 'ERR_FORBIDDEN'
        : 'ERR_HUB_RESPONSE');
  return new DstreamError(code, message, { hint: hintFor(code, message) });
}
