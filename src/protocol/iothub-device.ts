import { isCanonicalBase64 } from './base64.js';

/** The parts of a registry device that IoT Hub's device identity JSON is made from. */
export interface DeviceIdentitySource {
  readonly deviceId: string;
  readonly primaryKey: string;
  readonly secondaryKey: string;
  readonly status: 'enabled' | 'disabled';
  readonly createdTime: string;
  readonly lastActivityTime: string | null;
  readonly version: number;
}

/** .NET ticks (100 ns since 0001-01-01) at the Unix epoch. */
const ticksAtEpoch = 621_355_968_000_000_000n;

/**
 * IoT Hub's generationId: tells apart devices that had the same id at different times. IoT
 * Hub's are .NET ticks of the creation; dstream's are the same, from the creation time.
 */
export function generationIdOf(device: Pick<DeviceIdentitySource, 'createdTime'>): string {
  const ms = Date.parse(device.createdTime);
  return String(ticksAtEpoch + BigInt(Number.isNaN(ms) ? 0 : ms) * 10_000n);
}

/**
 * The device's etag (unquoted): changes whenever its status or keys change, and differs
 * between generations, so an `If-Match` taken from a deleted device never matches its
 * successor. Opaque to clients, as IoT Hub's (base64 text).
 */
export function etagOf(device: Pick<DeviceIdentitySource, 'createdTime' | 'version'>): string {
  return Buffer.from(`${generationIdOf(device)}.${device.version}`).toString('base64');
}

/** The twin's own etag: dstream's twins never change (no desired or reported properties). */
export const twinEtag = 'AAAAAAAAAAE=';

/**
 * What an `If-Match` header asks: any existing device (`*`, quoted or not, as Microsoft's
 * SDKs send it), one of the listed etags, or nothing (no header: unconditional).
 */
export type IfMatch =
  | { readonly kind: 'none' }
  | { readonly kind: 'any' }
  | { readonly kind: 'etags'; readonly etags: readonly string[] };

export function parseIfMatch(header: string | string[] | undefined): IfMatch {
  if (header === undefined) return { kind: 'none' };
  const parts = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((p) => p.trim().replace(/^W\//, ''))
    .map((p) => (p.length >= 2 && p.startsWith('"') && p.endsWith('"') ? p.slice(1, -1) : p))
    .filter((p) => p !== '');
  if (parts.length === 0) return { kind: 'none' };
  if (parts.includes('*')) return { kind: 'any' };
  return { kind: 'etags', etags: parts };
}

/** True when the If-Match admits a device whose etag is `etag`. */
export function ifMatchAdmits(ifMatch: IfMatch, etag: string): boolean {
  return ifMatch.kind !== 'etags' || ifMatch.etags.includes(etag);
}

/** What a `PUT /devices/{id}` body asks for; fields left out (or empty keys) are not asked. */
export interface DeviceIdentityRequest {
  readonly status?: 'enabled' | 'disabled';
  readonly primaryKey?: string;
  readonly secondaryKey?: string;
}

/** IoT Hub's bounds on a symmetric key: base64 of 16 to 64 bytes. */
function keyProblem(which: string, key: string): string | undefined {
  if (!isCanonicalBase64(key)) return `${which} must be base64`;
  const bytes = Buffer.from(key, 'base64').length;
  if (bytes < 16 || bytes > 64)
    return `${which} must be 16 to 64 bytes (base64 of ${bytes} bytes given)`;
  return undefined;
}

/**
 * Read a device identity body as IoT Hub takes it (`{deviceId, status, authentication:
 * {type, symmetricKey: {primaryKey, secondaryKey}}, ...}`; other fields such as capabilities
 * or etag are ignored). An empty body or `{}` asks for nothing. A problem is one sentence.
 */
export function parseDeviceIdentity(
  body: unknown,
  deviceId: string,
): { readonly request: DeviceIdentityRequest } | { readonly problem: string } {
  if (body === undefined || body === null) return { request: {} };
  if (typeof body !== 'object' || Array.isArray(body))
    return { problem: 'the body must be a JSON object (a device identity)' };
  const o = body as Record<string, unknown>;
  if (o.deviceId !== undefined && o.deviceId !== deviceId)
    return { problem: `the body's deviceId does not match the path's ('${deviceId}')` };
  const request: { -readonly [K in keyof DeviceIdentityRequest]: DeviceIdentityRequest[K] } = {};
  if (o.status !== undefined) {
    if (o.status !== 'enabled' && o.status !== 'disabled')
      return { problem: 'status must be "enabled" or "disabled"' };
    request.status = o.status;
  }
  const auth = o.authentication;
  if (auth !== undefined && auth !== null) {
    if (typeof auth !== 'object' || Array.isArray(auth))
      return { problem: 'authentication must be an object' };
    const a = auth as Record<string, unknown>;
    if (a.type !== undefined && a.type !== 'sas')
      return {
        problem: `authentication type ${JSON.stringify(a.type)} is not supported: dstream devices use symmetric keys (type "sas")`,
      };
    const sk = a.symmetricKey;
    if (sk !== undefined && sk !== null) {
      if (typeof sk !== 'object' || Array.isArray(sk))
        return { problem: 'authentication.symmetricKey must be an object' };
      for (const which of ['primaryKey', 'secondaryKey'] as const) {
        const key = (sk as Record<string, unknown>)[which];
        // Microsoft's SDK sends empty keys when none are given: the hub generates them.
        if (key === undefined || key === null || key === '') continue;
        if (typeof key !== 'string') return { problem: `${which} must be a string` };
        const problem = keyProblem(which, key);
        if (problem) return { problem };
        request[which] = key;
      }
    }
  }
  return { request };
}

/**
 * A device identity as IoT Hub answers it (keys only when `withKeys`). dstream has no
 * cloud-to-device messages and no X.509 devices, so those fields are empty.
 */
export function deviceIdentityJson(
  device: DeviceIdentitySource,
  connected: boolean,
  withKeys: boolean,
): Record<string, unknown> {
  return {
    deviceId: device.deviceId,
    generationId: generationIdOf(device),
    etag: etagOf(device),
    connectionState: connected ? 'Connected' : 'Disconnected',
    status: device.status,
    statusReason: null,
    connectionStateUpdatedTime: null,
    statusUpdatedTime: null,
    lastActivityTime: device.lastActivityTime,
    cloudToDeviceMessageCount: 0,
    authentication: {
      type: 'sas',
      symmetricKey: withKeys
        ? { primaryKey: device.primaryKey, secondaryKey: device.secondaryKey }
        : { primaryKey: null, secondaryKey: null },
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    },
    capabilities: { iotEdge: false },
    createdTime: device.createdTime,
  };
}

/**
 * A minimal device twin: identity and connection state, no tags and no properties (dstream
 * keeps none). Its etag never changes; `deviceEtag` is the device's.
 */
export function twinJson(
  device: DeviceIdentitySource,
  connected: boolean,
): Record<string, unknown> {
  const metadata = { $lastUpdated: device.createdTime };
  return {
    deviceId: device.deviceId,
    etag: twinEtag,
    deviceEtag: etagOf(device),
    status: device.status,
    statusUpdateTime: null,
    connectionState: connected ? 'Connected' : 'Disconnected',
    lastActivityTime: device.lastActivityTime,
    cloudToDeviceMessageCount: 0,
    authenticationType: 'sas',
    x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    modelId: '',
    version: 1,
    tags: {},
    properties: {
      desired: { $metadata: metadata, $version: 1 },
      reported: { $metadata: metadata, $version: 1 },
    },
    capabilities: { iotEdge: false },
  };
}
