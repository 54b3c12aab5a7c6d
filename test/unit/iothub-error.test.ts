import { describe, expect, it } from 'vitest';
import {
  iotHubErrorBody,
  iotHubErrorNumbers,
  parseIotHubError,
} from '../../src/protocol/iothub-error.js';

describe('IoT Hub error bodies', () => {
  it('nests a JSON string with the numeric code, a tracking id, the sentence and the time', () => {
    const now = new Date('2026-12-03T06:00:00.000Z');
    const outer = JSON.parse(iotHubErrorBody('DeviceNotFound', 'no device "d1"', now)) as {
      Message: string;
      ExceptionMessage: string;
    };
    expect(Object.keys(outer)).toEqual(['Message', 'ExceptionMessage']);
    expect(outer.ExceptionMessage).toBe('');
    const inner = JSON.parse(outer.Message) as Record<string, unknown>;
    expect(inner).toEqual({
      errorCode: 404001,
      trackingId: expect.stringMatching(/^[0-9A-F]{32}$/) as unknown,
      message: 'no device "d1"',
      timestampUtc: '2026-12-03T06:00:00.000Z',
    });
  });

  it('gives each answer its own tracking id', () => {
    const id = (): unknown =>
      (
        JSON.parse(
          (JSON.parse(iotHubErrorBody('ServerError', 'x')) as { Message: string }).Message,
        ) as {
          trackingId: unknown;
        }
      ).trackingId;
    expect(id()).not.toBe(id());
  });

  it("numbers every name in its HTTP status's range, each number once", () => {
    const numbers = Object.values(iotHubErrorNumbers);
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const n of numbers) expect(String(n)).toMatch(/^[45]\d{5}$/);
    // The codes Microsoft's SDKs know, as IoT Hub sends them.
    expect(iotHubErrorNumbers).toMatchObject({
      ArgumentInvalid: 400004,
      IotHubUnauthorizedAccess: 401002,
      DeviceNotFound: 404001,
      DeviceNotOnline: 404103,
      DeviceAlreadyExists: 409001,
      PreconditionFailed: 412001,
      ThrottlingException: 429001,
      ServerError: 500001,
      ServiceUnavailable: 503001,
      GatewayTimeout: 504101,
    });
  });
});

describe('parseIotHubError', () => {
  it('reads its own bodies back, the name from the number when no header is given', () => {
    expect(
      parseIotHubError(iotHubErrorBody('GatewayTimeout', 'the device did not answer')),
    ).toEqual({ name: 'GatewayTimeout', message: 'the device did not answer' });
  });

  it('prefers the iothub-errorcode header to the number', () => {
    expect(parseIotHubError(iotHubErrorBody('NotFound', 'm'), 'DeviceNotFound').name).toBe(
      'DeviceNotFound',
    );
  });

  it("reads IoT Hub's older ErrorCode:<Name>;<sentence> form", () => {
    expect(
      parseIotHubError(
        JSON.stringify({
          Message: 'ErrorCode:DeviceNotOnline;Device is not online',
          ExceptionMessage: '',
        }),
      ),
    ).toEqual({ name: 'DeviceNotOnline', message: 'Device is not online' });
  });

  it("reads dstream's earlier {errorCode, message} bodies", () => {
    expect(parseIotHubError('{"errorCode":"DeviceDisabled","message":"off"}')).toEqual({
      name: 'DeviceDisabled',
      message: 'off',
    });
  });

  it('says nothing of a body that is not JSON, or a Message that is not', () => {
    expect(parseIotHubError('<html>502 Bad Gateway</html>')).toEqual({
      name: undefined,
      message: undefined,
    });
    expect(parseIotHubError('{"Message":"oops"}')).toEqual({ name: undefined, message: undefined });
    expect(parseIotHubError('<html></html>', 'ThrottlingException').name).toBe(
      'ThrottlingException',
    );
  });
});
