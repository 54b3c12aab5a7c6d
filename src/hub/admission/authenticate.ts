import type { IotHubErrorName } from '../../protocol/iothub-error.js';
import { hasValidSignature, parseSas, SasParseError, type SasToken } from '../../auth/sas.js';
import type { DeviceRecord, PolicyRecord, Registry, Right } from '../store/registry.js';

/** Tokens that expired up to this many seconds ago are still accepted (clock skew). */
export const clockSkewSeconds = 30;
/** The longest a token may be valid for, from now (24 h by default; --max-token-lifetime). */
export const defaultMaxTokenLifetimeSeconds = 24 * 3600;

/** Expired, or valid for longer than the hub allows: a reason, or undefined if the time is fine. */
function timeProblem(
  token: SasToken,
  nowSeconds: number,
  maxLifetimeSeconds: number,
): string | undefined {
  if (token.expiry + clockSkewSeconds < nowSeconds) return 'the token has expired';
  if (token.expiry - nowSeconds > maxLifetimeSeconds + clockSkewSeconds)
    return `the token is valid for longer than this hub allows (${maxLifetimeSeconds} s)`;
  return undefined;
}

export type AuthResult<T> =
  | { readonly ok: true; readonly value: T }
  | {
      readonly ok: false;
      readonly status: 401 | 403;
      readonly errorCode: IotHubErrorName;
      readonly message: string;
    };

type AuthFailure = Extract<AuthResult<unknown>, { ok: false }>;

const unauthorized = (message: string): AuthFailure => ({
  ok: false,
  status: 401,
  errorCode: 'IotHubUnauthorizedAccess',
  message,
});

function parse(
  header: string | undefined,
): AuthFailure | { readonly ok: true; readonly token: SasToken } {
  if (header === undefined || header === '') return unauthorized('missing Authorization header');
  try {
    return { ok: true as const, token: parseSas(header) };
  } catch (error) {
    if (error instanceof SasParseError)
      return unauthorized(`malformed SharedAccessSignature: ${error.message}`);
    throw error;
  }
}

/** The path part of a token's resource ("host/devices/x" -> "/devices/x"). */
function resourcePath(resource: string): string {
  const slash = resource.indexOf('/');
  return slash < 0 ? '' : resource.slice(slash).replace(/\/+$/, '');
}

/**
 * Check a service token: a known policy (skn), a valid signature with its key, not expired,
 * and the right asked for. The host part of sr is not compared: a hub may be reached under
 * several names, and keys are unique to one hub.
 */
export function authenticateService(
  registry: Registry,
  header: string | undefined,
  right: Right,
  nowSeconds: number,
  maxLifetimeSeconds: number = defaultMaxTokenLifetimeSeconds,
): AuthResult<PolicyRecord> {
  const parsed = parse(header);
  if (!parsed.ok) return parsed;
  const { token } = parsed;
  if (token.keyName === undefined) return unauthorized('a service token needs a policy name (skn)');
  const policy = registry.getPolicy(token.keyName);
  if (!policy || !hasValidSignature(token, policy.key))
    return unauthorized('invalid token signature or policy');
  const late = timeProblem(token, nowSeconds, maxLifetimeSeconds);
  if (late) return unauthorized(late);
  if (resourcePath(token.resource) !== '')
    return unauthorized('a service token must be scoped to the hub, not a device');
  if (!policy.rights.includes(right))
    return {
      ok: false,
      status: 403,
      errorCode: 'IotHubUnauthorizedAccess',
      message: `policy '${policy.name}' lacks the ${right} right`,
    };
  return { ok: true, value: policy };
}

/** Check a device token: scoped to exactly this device, signed with its key, not expired, enabled. */
export function authenticateDevice(
  registry: Registry,
  header: string | undefined,
  deviceId: string,
  nowSeconds: number,
  maxLifetimeSeconds: number = defaultMaxTokenLifetimeSeconds,
): AuthResult<DeviceRecord> {
  const parsed = parse(header);
  if (!parsed.ok) return parsed;
  const { token } = parsed;
  if (token.keyName !== undefined)
    return unauthorized('a device connects with a device token, not a policy token');
  if (
    resourcePath(token.resource) !== `/devices/${encodeURIComponent(deviceId)}` &&
    resourcePath(token.resource) !== `/devices/${deviceId}`
  )
    return unauthorized('the token is not scoped to this device');
  const device = registry.getDevice(deviceId);
  // Unknown device and bad signature answer alike, so the hub does not reveal which IDs exist.
  if (
    !device ||
    !(hasValidSignature(token, device.primaryKey) || hasValidSignature(token, device.secondaryKey))
  )
    return unauthorized('invalid device credentials');
  const late = timeProblem(token, nowSeconds, maxLifetimeSeconds);
  if (late) return unauthorized(late);
  if (device.status !== 'enabled')
    return {
      ok: false,
      status: 403,
      errorCode: 'DeviceDisabled',
      message: `device '${deviceId}' is disabled`,
    };
  return { ok: true, value: device };
}
