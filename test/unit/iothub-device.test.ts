import { describe, expect, it } from 'vitest';
import {
  etagOf,
  generationIdOf,
  ifMatchAdmits,
  parseDeviceIdentity,
  parseIfMatch,
} from '../../src/protocol/iothub-device.js';

describe('IoT Hub device identity', () => {
  it('generationId is .NET ticks of the creation time', () => {
    expect(generationIdOf({ createdTime: '1970-01-01T00:00:00.000Z' })).toBe('621355968000000000');
    expect(generationIdOf({ createdTime: '2026-12-03T06:00:00.123Z' })).toBe(
      String(621355968000000000n + BigInt(Date.parse('2026-12-03T06:00:00.123Z')) * 10000n),
    );
  });

  it('etags change with the version and with the generation', () => {
    const a = { createdTime: '2026-01-01T00:00:00.000Z', version: 1 };
    expect(etagOf(a)).toBe(etagOf({ ...a }));
    expect(etagOf({ ...a, version: 2 })).not.toBe(etagOf(a));
    expect(etagOf({ ...a, createdTime: '2026-01-01T00:00:00.001Z' })).not.toBe(etagOf(a));
    expect(etagOf(a)).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it('If-Match: absent, any (quoted or not, as the SDKs send it), or a list of etags', () => {
    expect(parseIfMatch(undefined)).toEqual({ kind: 'none' });
    expect(parseIfMatch('')).toEqual({ kind: 'none' });
    expect(parseIfMatch('"*"')).toEqual({ kind: 'any' });
    expect(parseIfMatch('*')).toEqual({ kind: 'any' });
    expect(parseIfMatch('"a", W/"b",c')).toEqual({ kind: 'etags', etags: ['a', 'b', 'c'] });
    expect(ifMatchAdmits(parseIfMatch('"a", "b"'), 'b')).toBe(true);
    expect(ifMatchAdmits(parseIfMatch('"a"'), 'b')).toBe(false);
    expect(ifMatchAdmits(parseIfMatch('"*"'), 'b')).toBe(true);
  });

  it('reads the bodies Microsoft SDKs send: empty keys are not asked for', () => {
    const k = Buffer.alloc(16, 9).toString('base64');
    expect(parseDeviceIdentity(undefined, 'd')).toEqual({ request: {} });
    expect(
      parseDeviceIdentity(
        {
          deviceId: 'd',
          status: 'disabled',
          capabilities: { iotEdge: false },
          authentication: { type: 'sas', symmetricKey: { primaryKey: k, secondaryKey: '' } },
        },
        'd',
      ),
    ).toEqual({ request: { status: 'disabled', primaryKey: k } });
    expect(
      parseDeviceIdentity({ authentication: { symmetricKey: { primaryKey: 5 } } }, 'd'),
    ).toEqual({ problem: 'primaryKey must be a string' });
    const long = Buffer.alloc(65).toString('base64');
    expect(
      parseDeviceIdentity({ authentication: { symmetricKey: { secondaryKey: long } } }, 'd'),
    ).toEqual({ problem: 'secondaryKey must be 16 to 64 bytes (base64 of 65 bytes given)' });
    // Lenient base64 (junk after valid text) is refused, as for signatures.
    expect(
      parseDeviceIdentity({ authentication: { symmetricKey: { primaryKey: `${k}xx` } } }, 'd'),
    ).toEqual({ problem: 'primaryKey must be base64' });
  });
});
