import { describe, expect, it } from 'vitest';
import {
  formatDeviceConnectionString,
  formatServiceConnectionString,
  parseConnectionString,
} from '../../src/auth/connection-string.js';
import { DstreamError } from '../../src/errors.js';

const key = Buffer.alloc(32, 1).toString('base64');
const fp = 'AB'.repeat(32);

describe('connection strings', () => {
  it('parses a device string with port and pinned fingerprint', () => {
    const cs = parseConnectionString(
      `HostName=hub.example.com:8443;DeviceId=pi-01;SharedAccessKey=${key};CertificateFingerprint=${'ab:'.repeat(31)}ab`,
    );
    expect(cs).toEqual({
      kind: 'device',
      hub: { host: 'hub.example.com', port: 8443, tls: true, fingerprint: fp },
      deviceId: 'pi-01',
      sharedAccessKey: key,
    });
  });

  it('parses a service string; default port 443; IPv6 host; UseTls=false', () => {
    expect(
      parseConnectionString(
        `HostName=hub.example.com;SharedAccessKeyName=service;SharedAccessKey=${key}`,
      ),
    ).toEqual({
      kind: 'service',
      hub: { host: 'hub.example.com', port: 443, tls: true, fingerprint: undefined },
      sharedAccessKeyName: 'service',
      sharedAccessKey: key,
    });
    const v6 = parseConnectionString(
      `HostName=[::1]:9000;SharedAccessKeyName=s;SharedAccessKey=${key};UseTls=false`,
    );
    expect(v6.hub).toEqual({ host: '::1', port: 9000, tls: false, fingerprint: undefined });
  });

  it('port 443 is left out of HostName, as IoT Hub prints it; other ports stay', () => {
    const at = (host: string, port: number): string =>
      formatServiceConnectionString({ host, port, tls: true, fingerprint: undefined }, 's', key);
    expect(at('hub.example.com', 443)).toBe(
      `HostName=hub.example.com;SharedAccessKeyName=s;SharedAccessKey=${key}`,
    );
    expect(at('hub.example.com', 8443)).toMatch(/^HostName=hub\.example\.com:8443;/);
    expect(at('::1', 443)).toMatch(/^HostName=\[::1\];/);
    for (const text of [at('hub.example.com', 443), at('::1', 443)])
      expect(parseConnectionString(text).hub.port).toBe(443);
  });

  it('round-trips through format', () => {
    const hub = { host: '::1', port: 8443, tls: true, fingerprint: fp };
    const device = formatDeviceConnectionString(hub, "odd=id's", key);
    expect(parseConnectionString(device)).toMatchObject({
      kind: 'device',
      hub,
      deviceId: "odd=id's",
    });
    const service = formatServiceConnectionString(
      { ...hub, tls: false, fingerprint: undefined },
      'service',
      key,
    );
    expect(parseConnectionString(service)).toMatchObject({ kind: 'service', hub: { tls: false } });
  });

  it.each([
    ['', 'HostName is missing'],
    ['garbage', "'garbage' is not Name=value"],
    [`DeviceId=a;SharedAccessKey=${key}`, 'HostName is missing'],
    [`HostName=h:99999;DeviceId=a;SharedAccessKey=${key}`, 'is not host[:port]'],
    [`HostName=h;DeviceId=a`, 'SharedAccessKey is missing'],
    [`HostName=h;DeviceId=a;SharedAccessKey=c2hvcnQ=`, 'at least 128 bits'],
    [`HostName=h;DeviceId=a;SharedAccessKey=not*base64`, 'not a base64 key'],
    [`HostName=h;DeviceId=a;SharedAccessKey=${key}AA`, 'not a base64 key'],
    [`HostName=h;DeviceId=a;SharedAccessKey=${key.replace(/=+$/, '')}`, 'not a base64 key'],
    [`HostName=h;SharedAccessKey=${key}`, 'needs DeviceId'],
    [
      `HostName=h;DeviceId=a;SharedAccessKeyName=s;SharedAccessKey=${key}`,
      'both DeviceId and SharedAccessKeyName',
    ],
    [`HostName=h;DeviceId=a b;SharedAccessKey=${key}`, 'may not contain a space'],
    [`HostName=h;DeviceId=a;SharedAccessKey=${key};Foo=1`, "unknown field 'Foo'"],
    [`HostName=h;HostName=g;DeviceId=a;SharedAccessKey=${key}`, "'HostName' appears twice"],
    [
      `HostName=h;DeviceId=a;SharedAccessKey=${key};CertificateFingerprint=abc`,
      'not a SHA-256 fingerprint',
    ],
    [`HostName=h;DeviceId=a;SharedAccessKey=${key};UseTls=maybe`, 'UseTls must be true or false'],
  ])('rejects %j with a clear message', (text, message) => {
    let error: unknown;
    try {
      parseConnectionString(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DstreamError);
    expect((error as DstreamError).code).toBe('ERR_CONNECTION_STRING_INVALID');
    expect((error as DstreamError).message).toContain(message);
  });
});
