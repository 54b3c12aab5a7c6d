import { deviceIdProblem } from '../../protocol/identifiers.js';
import type {
  StreamRequestMessage,
  StreamResponseMessage,
} from '../../protocol/control-messages.js';

/**
 * IoT Hub's MQTT topics for device streams, as Azure's device SDKs use them: the hub publishes
 * a request on `$iothub/streams/POST/<name>/?$rid=<rid>&$url=<url>&$auth=<token>` to a device
 * subscribed to `$iothub/streams/POST/#`; the device answers on
 * `$iothub/streams/res/<200|400>/?$rid=<rid>`.
 */
export const streamRequestFilter = '$iothub/streams/POST/#';
/** Azure's C# device SDK subscribes to this one too when it enables streams. */
export const streamResponseFilter = '$iothub/streams/res/#';

/** The topic a stream request is published on. */
export function streamRequestTopic(message: StreamRequestMessage): string {
  return (
    `$iothub/streams/POST/${message.streamName}/?$rid=${message.requestId}` +
    `&$url=${encodeURIComponent(message.url)}&$auth=${encodeURIComponent(message.authorizationToken)}`
  );
}

const requestIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Read a device's publish on the response topic: 200 accepts, any other status rejects (IoT
 * Hub's devices send 400). Undefined for any other topic, or a malformed one.
 */
export function parseStreamResponseTopic(topic: string): StreamResponseMessage | undefined {
  const m = /^\$iothub\/streams\/res\/(\d{3})\/\?(.*)$/.exec(topic);
  if (!m) return undefined;
  const params = new URLSearchParams(m[2]);
  const rid = params.get('$rid');
  if (rid === null || !requestIdPattern.test(rid)) return undefined;
  const status = Number(m[1]);
  return status === 200
    ? { type: 'stream-response', requestId: rid, accepted: true }
    : {
        type: 'stream-response',
        requestId: rid,
        accepted: false,
        reason: `the device answered ${status}`,
      };
}

/**
 * IoT Hub's MQTT username: `<host>/<deviceId>/?api-version=<v>` (older SDKs put the version
 * or product info after a single `/`). The device id must be the client id; the host is not
 * compared, as the host in a token's resource is not.
 */
export function usernameProblem(
  username: string | undefined,
  clientId: string,
): string | undefined {
  if (username === undefined || username === '') return 'no username';
  const parts = username.split('/');
  if (parts.length < 2 || parts[0] === '') return `username is not <host>/<deviceId>/...`;
  if (parts[1] !== clientId)
    return `username names device '${parts[1] ?? ''}', the client id '${clientId}'`;
  return undefined;
}

/**
 * Why a client id cannot be a dstream device, or undefined. IoT Hub's module clients connect
 * as `<deviceId>/<moduleId>`; dstream has no module identities.
 */
export function clientIdProblem(clientId: string): string | undefined {
  if (clientId.includes('/'))
    return `client id '${clientId}' names a module: dstream has no module identities, connect as the device`;
  return deviceIdProblem(clientId);
}
