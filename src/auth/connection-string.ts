import { DstreamError } from '../errors.js';
import { isCanonicalBase64 } from '../protocol/base64.js';
import { deviceIdProblem } from '../protocol/identifiers.js';

/** How a client reaches and trusts a hub. */
export interface HubAddress {
  /** Host name or IP address (IPv6 without brackets). */
  readonly host: string;
  readonly port: number;
  /** False only for hubs run with --insecure-no-tls. */
  readonly tls: boolean;
  /** SHA-256 fingerprint of a self-signed hub certificate (64 upper-case hex digits), to pin. */
  readonly fingerprint: string | undefined;
}

export interface DeviceConnectionString {
  readonly kind: 'device';
  readonly hub: HubAddress;
  readonly deviceId: string;
  readonly sharedAccessKey: string;
}

export interface ServiceConnectionString {
  readonly kind: 'service';
  readonly hub: HubAddress;
  readonly sharedAccessKeyName: string;
  readonly sharedAccessKey: string;
}

export type ConnectionString = DeviceConnectionString | ServiceConnectionString;

const known = new Set([
  'HostName',
  'DeviceId',
  'SharedAccessKey',
  'SharedAccessKeyName',
  'CertificateFingerprint',
  'UseTls',
]);

function invalid(message: string): DstreamError {
  return new DstreamError(
    'ERR_CONNECTION_STRING_INVALID',
    `invalid connection string: ${message}`,
    {
      hint: 'Use the string printed by `dstream hub init` (service) or `dstream device add` (device).',
    },
  );
}

/** Normalise a SHA-256 fingerprint ("ab:cd:..." or "ABCD...") to 64 upper-case hex digits. */
export function normalizeFingerprint(value: string): string | undefined {
  const hex = value
    .replace(/^sha256:/i, '')
    .replace(/:/g, '')
    .toUpperCase();
  return /^[0-9A-F]{64}$/.test(hex) ? hex : undefined;
}

/** Format a fingerprint the way OpenSSL and browsers show it: AB:CD:... */
export function formatFingerprint(hex: string): string {
  return hex.match(/../g)?.join(':') ?? hex;
}

/** Split "host:port", "[v6]:port" or "host" (port 443). */
export function parseHostPort(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.\-_]+))(?::(\d{1,5}))?$/.exec(value);
  if (!m) return undefined;
  const port = m[3] === undefined ? 443 : Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

/** "host:port", bracketing IPv6 addresses. */
export function formatHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function checkKey(key: string | undefined): string {
  if (key === undefined || key === '') throw invalid('SharedAccessKey is missing');
  if (!isCanonicalBase64(key) || Buffer.from(key, 'base64').length < 16)
    throw invalid('SharedAccessKey is not a base64 key of at least 128 bits');
  return key;
}

/** Parse an IoT Hub style connection string into a device or service credential. */
export function parseConnectionString(text: string): ConnectionString {
  const fields = new Map<string, string>();
  for (const raw of text.trim().split(';')) {
    if (raw === '') continue;
    const eq = raw.indexOf('=');
    if (eq <= 0) throw invalid(`'${raw.slice(0, 30)}' is not Name=value`);
    const name = raw.slice(0, eq).trim();
    if (!known.has(name)) throw invalid(`unknown field '${name.slice(0, 40)}'`);
    if (fields.has(name)) throw invalid(`field '${name}' appears twice`);
    fields.set(name, raw.slice(eq + 1).trim());
  }
  const hostName = fields.get('HostName');
  if (!hostName) throw invalid('HostName is missing');
  const hostPort = parseHostPort(hostName);
  if (!hostPort) throw invalid(`HostName '${hostName.slice(0, 80)}' is not host[:port]`);
  let fingerprint: string | undefined;
  const fp = fields.get('CertificateFingerprint');
  if (fp !== undefined) {
    fingerprint = normalizeFingerprint(fp);
    if (!fingerprint) throw invalid('CertificateFingerprint is not a SHA-256 fingerprint');
  }
  const useTls = fields.get('UseTls');
  if (useTls !== undefined && !/^(true|false)$/i.test(useTls))
    throw invalid('UseTls must be true or false');
  const hub: HubAddress = { ...hostPort, tls: useTls?.toLowerCase() !== 'false', fingerprint };
  const sharedAccessKey = checkKey(fields.get('SharedAccessKey'));
  const deviceId = fields.get('DeviceId');
  const keyName = fields.get('SharedAccessKeyName');
  if (deviceId !== undefined && keyName !== undefined)
    throw invalid(
      'has both DeviceId and SharedAccessKeyName; a string is for a device or a service',
    );
  if (deviceId !== undefined) {
    const problem = deviceIdProblem(deviceId);
    if (problem) throw invalid(problem);
    return { kind: 'device', hub, deviceId, sharedAccessKey };
  }
  if (keyName !== undefined) {
    if (!/^[A-Za-z0-9\-._]{1,64}$/.test(keyName))
      throw invalid('SharedAccessKeyName is not a valid policy name');
    return { kind: 'service', hub, sharedAccessKeyName: keyName, sharedAccessKey };
  }
  throw invalid('needs DeviceId (device) or SharedAccessKeyName (service)');
}

function hubFields(hub: HubAddress): string {
  // IoT Hub's strings name a bare host (port 443), and Microsoft's clients pass HostName to
  // the resolver as it is: "host:443" would fail their DNS lookup. Other ports stay, for
  // dstream's own clients (which read a bare host as port 443).
  if (hub.port === 443) return `HostName=${hub.host.includes(':') ? `[${hub.host}]` : hub.host}`;
  return `HostName=${formatHostPort(hub.host, hub.port)}`;
}

function trustFields(hub: HubAddress): string {
  let out = '';
  if (hub.fingerprint) out += `;CertificateFingerprint=${formatFingerprint(hub.fingerprint)}`;
  if (!hub.tls) out += ';UseTls=false';
  return out;
}

export function formatDeviceConnectionString(
  hub: HubAddress,
  deviceId: string,
  key: string,
): string {
  return `${hubFields(hub)};DeviceId=${deviceId};SharedAccessKey=${key}${trustFields(hub)}`;
}

export function formatServiceConnectionString(
  hub: HubAddress,
  keyName: string,
  key: string,
): string {
  return `${hubFields(hub)};SharedAccessKeyName=${keyName};SharedAccessKey=${key}${trustFields(hub)}`;
}
